//! Word lists for names, comments and other free text of the synthetic population.

/// Turkish first names.
pub(crate) const TR_FIRST: &[&str] = &[
    "Ahmet", "Mehmet", "Mustafa", "Ali", "Hüseyin", "Hasan", "İbrahim", "Murat", "Emre", "Burak", "Can", "Cem",
    "Deniz", "Efe", "Emir", "Eren", "Furkan", "Gökhan", "Kaan", "Kerem", "Mert", "Oğuz", "Onur", "Serkan", "Tolga",
    "Umut", "Volkan", "Yusuf", "Barış", "Çağlar", "Ayşe", "Fatma", "Emine", "Hatice", "Zeynep", "Elif", "Merve",
    "Büşra", "Esra", "Selin", "Ece", "Derya", "Gizem", "İrem", "Melis", "Özge", "Seda", "Şule", "Tuğba", "Yasemin",
];

/// Turkish family names.
pub(crate) const TR_LAST: &[&str] = &[
    "Yılmaz",
    "Kaya",
    "Demir",
    "Şahin",
    "Çelik",
    "Yıldız",
    "Yıldırım",
    "Öztürk",
    "Aydın",
    "Özdemir",
    "Arslan",
    "Doğan",
    "Kılıç",
    "Aslan",
    "Çetin",
    "Kara",
    "Koç",
    "Kurt",
    "Özkan",
    "Şimşek",
    "Polat",
    "Korkmaz",
    "Güneş",
    "Aksoy",
    "Erdoğan",
    "Taş",
    "Bulut",
    "Keskin",
    "Ünal",
    "Tekin",
];

/// English first names.
pub(crate) const EN_FIRST: &[&str] = &[
    "James", "Oliver", "Harry", "Jack", "George", "Noah", "Leo", "Oscar", "Liam", "Ethan", "Daniel", "Samuel",
    "Amelia", "Olivia", "Isla", "Emily", "Sophia", "Grace", "Lily", "Chloe", "Ella", "Mia", "Ava", "Lucy",
];

/// English family names.
pub(crate) const EN_LAST: &[&str] = &[
    "Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Johnson", "Davies", "Robinson", "Wright", "Thompson",
    "Evans", "Walker", "White", "Roberts", "Green", "Hall", "Wood", "Jackson", "Clarke",
];

/// Turkish comment fragments; comments join a few of them.
pub(crate) const TR_PHRASES: &[&str] = &[
    "Bu maç kesin gollü biter",
    "Hakem yine oyunu bozdu",
    "İlk yarı çok sıkıcıydı",
    "Bugün ev sahibi kazanır bence",
    "Defans felaket, her topta panik var",
    "Orta saha kontrolü tamamen rakipte",
    "Penaltı kesin, VAR neden bakmıyor?",
    "Kaleci maçı tek başına aldı",
    "Ben 2-1 dedim, tuttu!",
    "Bu kadroyla şampiyonluk zor",
    "Teknik direktör değişmeli artık",
    "Harika bir gol, tebrikler",
    "Karşılıklı gol kesin var",
    "Üst 2.5 oynadım, umarım tutar",
    "Deplasmanda bu takımı kimse durduramaz",
    "Son dakika golü yine geldi",
    "Taraftar muhteşemdi bugün",
    "Forvet hiç top tutamadı",
    "İkinci yarı bambaşka bir oyun oldu",
    "Beraberlik en mantıklı tahmin",
    "Kırmızı kart maçı kopardı",
    "Bu sezonun en iyi maçıydı",
    "Tahminlerim bu hafta hep tuttu",
    "Kupa maçlarında sürpriz çok olur",
    "Sakatlıklar takımı çok etkiledi",
];

/// English comment fragments.
pub(crate) const EN_PHRASES: &[&str] = &[
    "This one ends with goals for sure",
    "The referee ruined the game again",
    "First half was so boring",
    "Home side wins this, no doubt",
    "The defence panics on every ball",
    "Midfield is completely lost",
    "Clear penalty, why is VAR silent?",
    "The keeper won it on his own",
    "Called 2-1 and it landed!",
    "Both teams to score, easy",
    "Over 2.5 again, love it",
    "What a goal, unbelievable",
    "Late winner once more",
    "The fans were amazing tonight",
    "Striker could not hold the ball at all",
    "A draw is the smart pick here",
    "The red card killed the game",
    "Best match of the season",
];

/// Short reactions, used alone or to end a comment.
pub(crate) const REACTIONS: &[&str] =
    &["👏", "🔥", "⚽", "😂", "😡", "💯", "Helal!", "Yazık", "GG", "Vay be", "Olé", "🙌"];

/// Comments of a word or two (at least 3 characters: the schema's check).
pub(crate) const SHORT_COMMENTS: &[&str] =
    &["Gol!", "Helal!", "Yazık", "Vay be", "Olé", "Süper", "Nice!", "Wow", "Offside!"];

/// Words of partner business names.
pub(crate) const BUSINESS_WORDS: &[&str] =
    &["Gol", "Tahmin", "Futbol", "Analiz", "Kupa", "Skor", "Taraftar", "Saha", "Maç", "Lig", "Derbi", "Forma"];

/// Suffixes of partner business names.
pub(crate) const BUSINESS_SUFFIXES: &[&str] =
    &["Medya", "Dijital", "TV", "Spor", "Ajans", "Kulübü", "Network", "Akademi", "Yayıncılık"];

/// App versions seen on push tokens.
pub(crate) const APP_VERSIONS: &[&str] = &["3.14.0", "3.13.2", "3.13.1", "3.12.0", "3.10.4", "3.8.0", "2.9.7"];

/// Ad networks and their rewarded / interstitial unit ids.
pub(crate) const AD_UNITS: &[(&str, &str, &str)] = &[
    ("admob", "ca-app-pub-3940256099942544/5224354917", "ca-app-pub-3940256099942544/1033173712"),
    ("applovin", "rewarded_match_detail", "interstitial_match_list"),
    ("unity", "Rewarded_Android", "Interstitial_Android"),
    ("ironsource", "DefaultRewardedVideo", "DefaultInterstitial"),
];

/// Where in the app an ad was shown.
pub(crate) const AD_PLACEMENTS: &[&str] = &["match_detail", "predictions", "daily_rewards", "credits_store", "home"];

/// Prediction markets.
pub(crate) const MARKETS: &[&str] =
    &["home_win", "draw", "away_win", "over_2_5", "under_2_5", "btts_yes", "btts_no", "home_or_draw"];

/// Lower-case ASCII form of a name for e-mail addresses and user names (Turkish letters transliterated).
pub(crate) fn ascii_lower(name: &str, out: &mut String) {
    for c in name.chars() {
        let mapped = match c {
            'ç' | 'Ç' => 'c',
            'ğ' | 'Ğ' => 'g',
            'ı' | 'I' | 'İ' | 'i' => 'i',
            'ö' | 'Ö' => 'o',
            'ş' | 'Ş' => 's',
            'ü' | 'Ü' => 'u',
            c if c.is_ascii_alphanumeric() => c.to_ascii_lowercase(),
            _ => continue,
        };
        out.push(mapped);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_transliterate_to_ascii() {
        let mut out = String::new();
        ascii_lower("Şükrü Çağlar İnce", &mut out);
        assert_eq!(out, "sukrucaglarince");
    }

    #[test]
    fn fragments_have_no_copy_control_characters() {
        for text in TR_PHRASES.iter().chain(EN_PHRASES).chain(REACTIONS).chain(SHORT_COMMENTS) {
            assert!(!text.contains(['\t', '\n', '\r', '\\']), "{text}");
        }
        for text in SHORT_COMMENTS.iter().chain(TR_PHRASES).chain(EN_PHRASES) {
            assert!(text.chars().count() >= 3, "{text}");
        }
    }
}
