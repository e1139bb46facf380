//! `kiln templates list`: the templates of one zone or of every zone (queried concurrently),
//! with their age and a stale flag ("always distrust machines that are too old").

use std::io::Write;

use chrono::Utc;
use clap::Args;
use serde_json::{Value, json};

use super::{ApiArgs, Failure, Session, format};
use crate::exoscale::describe;
use crate::exoscale::zone::EXOSCALE_ZONES;
use crate::exoscale::{ApiError, Template, TemplateFilter, Visibility};

use crate::exoscale::describe::DEFAULT_STALE_AFTER_DAYS;

/// Arguments of `kiln templates list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    api: ApiArgs,
    /// The zone to list (default: the profile's zone, else ch-gva-2).
    #[arg(long, short = 'z', value_name = "ZONE", conflicts_with = "all_zones")]
    pub zone: Option<String>,
    /// List every zone, queried at the same time.
    #[arg(long)]
    pub all_zones: bool,
    /// Your organization's templates (private, the default) or Exoscale's (public).
    #[arg(long, value_enum, default_value = "private")]
    pub visibility: Visibility,
    /// Only templates of this family (e.g. `debian`).
    #[arg(long, value_name = "FAMILY")]
    pub family: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Flag templates older than this many days as stale.
    #[arg(long, value_name = "DAYS", default_value_t = DEFAULT_STALE_AFTER_DAYS)]
    pub stale_after: u32,
}

impl ListArgs {
    fn zones(&self, session: &Session) -> Vec<String> {
        if self.all_zones {
            EXOSCALE_ZONES.iter().map(|z| z.to_string()).collect()
        } else {
            vec![session.zone(self.zone.as_deref())]
        }
    }
}

/// Runs `kiln templates list`: exit 0, or 1 when a zone could not be listed (the others
/// are still shown).
pub async fn run(
    args: &ListArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<i32, Failure> {
    let filter = TemplateFilter {
        visibility: Some(args.visibility),
        family: args.family.clone(),
    };
    // Bad credentials or zone names fail before anything is sent.
    let session = args.api.session()?;
    let clients = args
        .zones(&session)
        .iter()
        .map(|zone| session.client(zone))
        .collect::<Result<Vec<_>, ApiError>>()?;
    let mut tasks = tokio::task::JoinSet::new();
    for (index, client) in clients.into_iter().enumerate() {
        let filter = filter.clone();
        tasks.spawn(async move {
            let result = client.list_templates(&filter).await;
            (index, client.zone().to_string(), result)
        });
    }
    let mut results = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(r) => results.push(r),
            Err(e) => return Err(Failure::Io(std::io::Error::other(e))),
        }
    }
    results.sort_by_key(|(index, _, _)| *index);

    let mut rows: Vec<(String, Template)> = Vec::new();
    let mut failed = 0;
    for (_, zone, result) in results {
        match result {
            Ok(templates) => rows.extend(templates.into_iter().map(|t| (zone.clone(), t))),
            Err(e) => {
                failed += 1;
                writeln!(err, "kiln: zone {zone}: {e}")?;
            }
        }
    }
    // Newest first within each zone; zones in the order asked.
    rows.sort_by(|(za, a), (zb, b)| {
        let zone_order = |z: &str| EXOSCALE_ZONES.iter().position(|k| *k == z);
        zone_order(za)
            .cmp(&zone_order(zb))
            .then_with(|| b.created().cmp(&a.created()))
    });
    if args.json {
        print_json(args, &rows, out)?;
    } else {
        print_table(args, &rows, out)?;
    }
    Ok(if failed > 0 { 1 } else { 0 })
}

fn print_json(
    args: &ListArgs,
    rows: &[(String, Template)],
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let now = Utc::now();
    let items: Vec<Value> = rows
        .iter()
        .map(|(zone, t)| {
            let mut item = serde_json::to_value(t).unwrap_or_else(|_| json!({}));
            item["zone"] = json!(zone);
            let created = t.created();
            item["age-days"] = json!(created.map(|c| describe::age_days(c, now)));
            item["stale"] =
                json!(created.is_some_and(|c| describe::is_stale(c, now, args.stale_after)));
            item
        })
        .collect();
    writeln!(
        out,
        "{}",
        serde_json::to_string_pretty(&items).unwrap_or_default()
    )?;
    Ok(())
}

fn print_table(
    args: &ListArgs,
    rows: &[(String, Template)],
    out: &mut dyn Write,
) -> Result<(), Failure> {
    if rows.is_empty() {
        writeln!(out, "no {} templates", args.visibility.as_str())?;
        return Ok(());
    }
    let now = Utc::now();
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|(zone, t)| {
            let created = t.created();
            vec![
                t.id.clone(),
                t.display_name().to_string(),
                zone.clone(),
                describe::size(t),
                t.boot_mode.clone().unwrap_or_else(|| "-".into()),
                describe::created(t),
                created
                    .map(|c| describe::age(c, now))
                    .unwrap_or_else(|| "-".into()),
                if created.is_some_and(|c| describe::is_stale(c, now, args.stale_after)) {
                    "STALE".into()
                } else {
                    String::new()
                },
            ]
        })
        .collect();
    let header = [
        "ID",
        "NAME",
        "ZONE",
        "SIZE",
        "BOOT MODE",
        "CREATED",
        "AGE",
        "",
    ];
    for line in format::table(&header, &cells) {
        writeln!(out, "{line}")?;
    }
    let stale = cells.iter().filter(|c| c[7] == "STALE").count();
    if stale > 0 {
        writeln!(
            out,
            "{stale} stale template(s): older than {} days — rebuild them, machines that old should not be trusted",
            args.stale_after
        )?;
    }
    Ok(())
}
