//! `hattrick messages`: the push catalogue (docs/push.md "Messages and languages"). A deployment adds a language
//! with a locale file and `import`; every write is recorded in the audit log under `cli:$USER`.
//!
//! A locale file is TOML: an optional `locale` (else the file's name, `de.toml`), then one table per push kind
//! with its `title` and `body`:
//!
//! ```toml
//! locale = "de"
//!
//! [streak_warning]
//! title = "Serien-Alarm 🔥"
//! body = "Verliere deine {streak}-Tage-Serie nicht! Noch {hours} Stunden bis Mitternacht."
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use domain::messages::{self, NewText};
use serde::Deserialize;

use super::{actor, usage};
use crate::config::Settings;
use crate::startup;

/// `hattrick messages ...`
#[derive(Debug, Subcommand)]
pub enum MessagesCommand {
    /// Print every push kind with its texts, by locale (built-in texts marked), and any problem in them.
    List(ListArgs),
    /// Store the texts of locale files (TOML: `locale`, then `[kind]` tables with `title` and `body`).
    ///
    /// Every file is checked first (locale, kinds, each text's placeholders); then all of them are written in one
    /// transaction, or none when any is wrong. Exit codes: 0 written, 2 a file is invalid.
    Import(ImportArgs),
    /// Print a locale file of the texts a user of LOCALE gets today, to give translators (fallbacks marked).
    Export(ExportArgs),
    /// Remove the deployment's texts in a locale (of one kind, or all); built-in texts apply again.
    Remove(RemoveArgs),
}

/// Options of `hattrick messages list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only this locale's texts.
    #[arg(long)]
    pub locale: Option<String>,
}

/// Options of `hattrick messages import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Locale files.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

/// Options of `hattrick messages export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The locale (de, pt-BR, ...).
    #[arg(long)]
    pub locale: String,
}

/// Options of `hattrick messages remove`.
#[derive(Debug, Args)]
pub struct RemoveArgs {
    /// The locale.
    #[arg(long)]
    pub locale: String,
    /// Only this kind's text.
    #[arg(long)]
    pub kind: Option<String>,
}

/// Runs `hattrick messages ...`. The catalogue is not required to be valid here: this is how it is mended.
pub async fn messages(settings: &Settings, command: MessagesCommand) -> anyhow::Result<ExitCode> {
    match command {
        MessagesCommand::Import(args) => {
            let texts = match read_files(&args.files) {
                Ok(texts) => texts,
                Err(problems) => return Ok(usage(&problems)),
            };
            let pool = connect(settings).await?;
            let now = startup::clock_from_env()?.now();
            let replaced = admin::actions::audited_message_put(&pool, &actor(), None, &texts, now).await?;
            crate::outln!("{} text(s) stored ({} new, {replaced} replaced)", texts.len(), texts.len() - replaced);
            Ok(ExitCode::SUCCESS)
        }
        MessagesCommand::List(args) => {
            let locale = match args.locale.as_deref().map(messages::locale).transpose() {
                Ok(locale) => locale,
                Err(problem) => return Ok(usage(&[format!("--locale: {problem}")])),
            };
            let pool = connect(settings).await?;
            let texts = messages::load(&pool).await?;
            for text in texts.iter().filter(|t| locale.as_ref().is_none_or(|l| &t.locale == l)) {
                crate::outln!("{}: {} | {}", text.label(), text.title, text.body);
            }
            let problems = messages::catalogue_problems(&texts);
            for problem in &problems {
                eprintln!("problem: {problem}");
            }
            Ok(if problems.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        MessagesCommand::Export(args) => {
            let locale = match messages::locale(&args.locale) {
                Ok(locale) => locale,
                Err(problem) => return Ok(usage(&[format!("--locale: {problem}")])),
            };
            let pool = connect(settings).await?;
            crate::outln!("# hattrick push texts for {locale}; placeholders must stay as written.");
            crate::outln!("locale = {}", toml_string(&locale));
            for kind in messages::KINDS {
                let Some(text) = raw_text(&pool, kind.kind, &locale).await? else { continue };
                crate::outln!();
                crate::outln!("# {}; placeholders: {}", kind.about, placeholder_list(kind));
                if text.0 != locale {
                    crate::outln!("# not translated yet: the {} text", text.0);
                }
                crate::outln!("[{}]", kind.kind);
                crate::outln!("title = {}", toml_string(&text.1));
                crate::outln!("body = {}", toml_string(&text.2));
            }
            Ok(ExitCode::SUCCESS)
        }
        MessagesCommand::Remove(args) => {
            let locale = match messages::locale(&args.locale) {
                Ok(locale) => locale,
                Err(problem) => return Ok(usage(&[format!("--locale: {problem}")])),
            };
            if let Some(kind) = args.kind.as_deref().filter(|k| messages::kind(k).is_none()) {
                return Ok(usage(&[format!("--kind: {kind:?} is not a push kind")]));
            }
            let pool = connect(settings).await?;
            let now = startup::clock_from_env()?.now();
            let removed =
                admin::actions::audited_message_remove(&pool, &actor(), None, args.kind.as_deref(), &locale, now)
                    .await?;
            crate::outln!("{removed} text(s) removed");
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn connect(settings: &Settings) -> anyhow::Result<db::Pool> {
    let pool = startup::pool(settings).await?;
    startup::require_schema(&pool).await?;
    Ok(pool)
}

/// The unrendered text (locale it is written in, title, body) a user of `locale` gets for `kind`.
async fn raw_text(pool: &db::Pool, kind: &str, locale: &str) -> Result<Option<(String, String, String)>, sqlx::Error> {
    let row = sqlx::query!(
        r#"SELECT locale AS "locale!", title AS "title!", body AS "body!" FROM hattrick_message($1, $2)"#,
        kind,
        locale
    )
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|r| (r.locale, r.title, r.body)))
}

fn placeholder_list(kind: &messages::Message) -> String {
    let names: Vec<String> = kind.placeholders().map(|p| format!("{{{p}}}")).collect();
    if names.is_empty() { "none".to_owned() } else { names.join(", ") }
}

/// A TOML basic string.
fn toml_string(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}

/// A locale file as written.
#[derive(Debug, Deserialize)]
struct LocaleFile {
    locale: Option<String>,
    #[serde(flatten)]
    texts: BTreeMap<String, FileText>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileText {
    title: String,
    body: String,
}

/// Every text of `files`, checked, or every problem as `file: kind.field: what`.
fn read_files(files: &[PathBuf]) -> Result<Vec<NewText>, Vec<String>> {
    let mut texts = Vec::new();
    let mut problems = Vec::new();
    for path in files {
        match read_file(path) {
            Ok(file_texts) => texts.extend(file_texts),
            Err(file_problems) => {
                problems.extend(file_problems.into_iter().map(|p| format!("{}: {p}", path.display())));
            }
        }
    }
    if problems.is_empty() { Ok(texts) } else { Err(problems) }
}

fn read_file(path: &Path) -> Result<Vec<NewText>, Vec<String>> {
    let source = std::fs::read_to_string(path).map_err(|e| vec![e.to_string()])?;
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    parse_locale_file(&source, &stem)
}

/// The texts of a locale file's `source`, checked; `locale` when the file names none (its file name).
pub fn parse_locale_file(source: &str, locale: &str) -> Result<Vec<NewText>, Vec<String>> {
    let file: LocaleFile = toml::from_str(source).map_err(|e| vec![e.to_string().trim_end().replace('\n', " ")])?;
    let raw = file.locale.unwrap_or_else(|| locale.to_owned());
    let mut problems = Vec::new();
    let locale = messages::locale(&raw).unwrap_or_else(|problem| {
        problems.push(format!("locale: {problem}"));
        raw
    });
    if file.texts.is_empty() {
        problems.push("no texts (a [kind] table with title and body)".to_owned());
    }
    let mut texts = Vec::new();
    for (kind, text) in file.texts {
        let errors = messages::text_problems(&kind, &text.title, &text.body);
        problems.extend(errors.iter().map(|e| format!("{kind}.{e}")));
        texts.push(NewText { kind, locale: locale.clone(), title: text.title, body: text.body });
    }
    if problems.is_empty() { Ok(texts) } else { Err(problems) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, source: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, source).unwrap();
        path
    }

    #[test]
    fn a_locale_file_is_read_and_checked() {
        let dir = std::env::temp_dir().join(format!("hattrick-messages-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = write(
            &dir,
            "pt_BR.toml",
            "[streak_warning]\ntitle = \"Sequência 🔥\"\nbody = \"{streak} dias, faltam {hours} horas\"\n",
        );
        let texts = read_files(std::slice::from_ref(&good)).unwrap();
        assert_eq!(texts.len(), 1);
        assert_eq!(texts[0].locale, "pt-br");
        let bad = write(
            &dir,
            "de.toml",
            "locale = \"deutsch\"\n[streak_warning]\ntitle = \"x\"\nbody = \"{tage}\"\n[welcome_vip]\ntitle = \"\"\nbody = \"y\"\n",
        );
        let problems = read_files(&[good, bad.clone()]).unwrap_err();
        let shown = bad.display().to_string();
        assert_eq!(
            problems,
            [
                format!(
                    "{shown}: locale: \"deutsch\" is not a locale (a language such as `de`, optionally with a region: `pt-br`)"
                ),
                format!(
                    "{shown}: streak_warning.body: {{tage}} is not a placeholder of streak_warning (it has {{streak}}, {{hours}})"
                ),
                format!("{shown}: welcome_vip.title: required"),
            ]
        );
        let typo = write(&dir, "fr.toml", "[streak_warning]\ntitle = \"x\"\nbdy = \"y\"\n");
        assert!(read_files(&[typo]).unwrap_err()[0].contains("bdy"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn exported_strings_read_back() {
        let text = "Don't \"lose\" it\nnow \\ {streak}";
        let parsed: toml::Value = toml::from_str(&format!("x = {}", toml_string(text))).unwrap();
        assert_eq!(parsed["x"].as_str(), Some(text));
    }
}
