//! Partner analytics over a date range, with the revenue chart.

use std::collections::BTreeMap;
use std::sync::Arc;

use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::extract::{Query, State};
use axum::routing::get;
use chrono::{Duration as TimeDelta, NaiveDate};
use serde::Deserialize;
use uuid::Uuid;

use super::{Page, Session};
use crate::Admin;
use crate::api::partners::{check_day, check_range};
use crate::data::{self};

/// This resource's pages.
pub(super) fn routes(router: Router<Arc<Admin>>) -> Router<Arc<Admin>> {
    router.route("/admin/ui/partners", get(partners_page))
}

#[derive(Debug, Deserialize)]
struct RangeForm {
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
}

/// A bar of the revenue chart.
struct Bar {
    x: f64,
    y: f64,
    width: f64,
    height: f64,
    title: String,
}

/// One partner's totals over the range.
struct PartnerTotal {
    name: String,
    revenue: String,
    commission: String,
    signups: i64,
    subscriptions: i64,
}

#[derive(Template, WebTemplate)]
#[template(path = "partners.html")]
struct PartnersPage {
    csrf: String,
    actor: String,
    notice: Option<String>,
    from: NaiveDate,
    to: NaiveDate,
    bars: Vec<Bar>,
    commission_points: String,
    max_label: String,
    totals: Vec<PartnerTotal>,
    days: usize,
}

const CHART_WIDTH: f64 = 720.0;
const CHART_HEIGHT: f64 = 200.0;

async fn partners_page(
    State(admin): State<Arc<Admin>>,
    session: Session,
    Query(range): Query<RangeForm>,
) -> Page<PartnersPage> {
    let today = admin.engine.clock().now().date_naive();
    let to = range.to.unwrap_or(today - TimeDelta::days(1));
    check_day("to", to)?;
    let from = range.from.unwrap_or(to - TimeDelta::days(29));
    check_range(from, to)?;
    let rows = data::partner_days(admin.pool(), from, to, None).await?;
    let days = usize::try_from((to - from).num_days() + 1).unwrap_or(1);
    let mut revenue = vec![0.0f64; days];
    let mut commission = vec![0.0f64; days];
    let mut totals: BTreeMap<(String, Uuid), (f64, f64, i64, i64)> = BTreeMap::new();
    for row in &rows {
        let day = usize::try_from((row.date - from).num_days()).unwrap_or(0).min(days - 1);
        revenue[day] += row.revenue;
        commission[day] += row.commission;
        let total = totals.entry((row.business_name.clone(), row.partner_id)).or_default();
        total.0 += row.revenue;
        total.1 += row.commission;
        total.2 += i64::from(row.new_signups);
        total.3 += i64::from(row.new_subscriptions);
    }
    let max = revenue.iter().chain(&commission).copied().fold(0.0, f64::max).max(1.0);
    let slot = CHART_WIDTH / days as f64;
    let bars = revenue
        .iter()
        .enumerate()
        .map(|(i, value)| {
            let height = value / max * CHART_HEIGHT;
            Bar {
                x: i as f64 * slot + slot * 0.1,
                y: CHART_HEIGHT - height,
                width: slot * 0.8,
                height,
                title: format!(
                    "{}: revenue {value:.2}, commission {:.2}",
                    from + TimeDelta::days(i as i64),
                    commission[i]
                ),
            }
        })
        .collect();
    let commission_points = commission
        .iter()
        .enumerate()
        .map(|(i, value)| {
            format!("{:.1},{:.1}", i as f64 * slot + slot / 2.0, CHART_HEIGHT - value / max * CHART_HEIGHT)
        })
        .collect::<Vec<_>>()
        .join(" ");
    Ok(PartnersPage {
        csrf: session.csrf,
        actor: session.token.name,
        notice: None,
        from,
        to,
        bars,
        commission_points,
        max_label: format!("{max:.2}"),
        totals: totals
            .into_iter()
            .map(|((name, _), (revenue, commission, signups, subscriptions))| PartnerTotal {
                name,
                revenue: format!("{revenue:.2}"),
                commission: format!("{commission:.2}"),
                signups,
                subscriptions,
            })
            .collect(),
        days,
    })
}
