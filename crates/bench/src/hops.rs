//! Where a scenario's time went, hop by hop: the services' own latency
//! histograms (every `*_seconds` histogram on their Prometheus `/metrics`),
//! read before and after the scenario and differenced, so that a slow login
//! shows whether it waited in the gateway, on NATS or in the challenge
//! service. The figures are the services' own: only what was recorded during
//! the run, to the resolution of their buckets. Beside them, how many logins
//! shared each statement the services batch (`vigil_batch_size`): batches
//! that stay near one item save nothing.

use std::{collections::BTreeMap, fmt::Write as _, time::Duration};

/// One histogram series: cumulative bucket counts by upper bound, sum, count.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Series {
    /// (upper bound in seconds, cumulative count), `+Inf` as infinity.
    pub buckets: Vec<(f64, f64)>,
    pub sum: f64,
    pub count: f64,
}

/// Every latency histogram of every watched service, by
/// (service, `metric{labels}`).
pub type Snapshot = BTreeMap<(String, String), Series>;

/// One hop over the scenario: how many, mean, and the bucket bounds the
/// 50th and 99th percentiles fall under.
#[derive(Debug, Clone, PartialEq)]
pub struct Hop {
    pub service: String,
    pub series: String,
    pub count: u64,
    pub mean: Duration,
    pub p50_under: f64,
    pub p99_under: f64,
}

/// The services whose `/metrics` are read, as (name, url).
pub struct Metrics {
    client: reqwest::Client,
    targets: Vec<(String, String)>,
}

impl Metrics {
    pub fn new(targets: Vec<(String, String)>) -> Self {
        Self {
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap_or_default(),
            targets,
        }
    }

    /// Reads every target now.
    pub async fn snapshot(&self) -> Snapshot {
        histograms(fetch(&self.client, &self.targets).await)
    }

    /// Every target's latency histograms and backlog gauges now, from one
    /// read of each `/metrics`.
    pub async fn snapshot_and_backlog(&self) -> (Snapshot, Backlog) {
        let texts = fetch(&self.client, &self.targets).await;
        let mut backlog = Backlog::new();
        for (service, text) in &texts {
            for (series, value) in parse_backlog(text) {
                backlog.push((service.clone(), series, value));
            }
        }
        (histograms(texts), backlog)
    }
}

/// Reads the `/metrics` of each (name, url); a service that does not answer
/// is left out with a note, so a partial stack still gets a report.
async fn fetch(client: &reqwest::Client, targets: &[(String, String)]) -> Vec<(String, String)> {
    let mut texts = Vec::with_capacity(targets.len());
    for (service, url) in targets {
        match client
            .get(url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
        {
            Ok(response) => texts.push((service.clone(), response.text().await.unwrap_or_default())),
            Err(e) => eprintln!("hops: {service}'s metrics ({url}) not read: {e}"),
        }
    }
    texts
}

/// The latency histograms of each (service, `/metrics` text).
fn histograms(texts: Vec<(String, String)>) -> Snapshot {
    let mut snapshot = Snapshot::new();
    for (service, text) in texts {
        for (series, histogram) in parse(&text) {
            snapshot.insert((service.clone(), series), histogram);
        }
    }
    snapshot
}

/// The gauges that say whether the event pipeline kept up with the logins:
/// rows waiting in each outbox, and events waiting for each consumer.
const BACKLOG_GAUGES: [&str; 4] = [
    "vigil_outbox_backlog",
    "vigil_outbox_oldest_age_seconds",
    "vigil_consumer_pending_messages",
    "vigil_consumer_ack_pending_messages",
];

/// Backlog gauges as (service, `metric{labels}`, value).
pub type Backlog = Vec<(String, String, f64)>;

/// The [`BACKLOG_GAUGES`] in a Prometheus text exposition.
pub fn parse_backlog(text: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let metric = series.split_once('{').map_or(series, |(metric, _)| metric);
            BACKLOG_GAUGES.contains(&metric).then_some(())?;
            Some((series.to_owned(), value.parse::<f64>().ok()?))
        })
        .collect()
}

/// The backlog of events not yet relayed or consumed, as the services last
/// sampled it (every 10 s): a relay or consumer that falls behind shows here
/// while the logins still look fast.
pub fn report_backlog(backlog: &Backlog) -> String {
    if backlog.is_empty() {
        return String::new();
    }
    let waiting: Vec<String> = backlog
        .iter()
        .filter(|(_, _, value)| *value > 0.0)
        .map(|(service, series, value)| format!("    {service} {series} {value}\n"))
        .collect();
    if waiting.is_empty() {
        "  backlog at the end (as last sampled): none\n".to_owned()
    } else {
        format!(
            "  backlog at the end (as last sampled, every 10 s):\n{}",
            waiting.concat()
        )
    }
}

/// The summaries of items per shared statement (`vigil_runtime::batch`):
/// only their sum and count are read, and a hop of one reports its mean.
const BATCH_SUMMARY: &str = "vigil_batch_size";

fn is_batch(series: &str) -> bool {
    series.starts_with(BATCH_SUMMARY) && series[BATCH_SUMMARY.len()..].chars().next().is_none_or(|c| c == '{')
}

/// The `*_seconds` histograms (and the batch summaries) in a Prometheus
/// text exposition.
pub fn parse(text: &str) -> BTreeMap<String, Series> {
    let mut out: BTreeMap<String, Series> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else { continue };
        let (metric, labels) = match series.split_once('{') {
            Some((metric, rest)) => (metric, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        let Some((base, part)) = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| metric.strip_suffix(suffix).map(|base| (base, *suffix)))
        else {
            continue;
        };
        if !base.ends_with("_seconds") && base != BATCH_SUMMARY {
            continue;
        }
        let mut le = None;
        let rest: Vec<&str> = labels
            .split(',')
            .filter(|l| !l.is_empty())
            .filter(|l| match l.strip_prefix("le=") {
                Some(bound) => {
                    le = Some(bound.trim_matches('"').parse::<f64>().unwrap_or(f64::INFINITY));
                    false
                }
                None => true,
            })
            .collect();
        let name = if rest.is_empty() {
            base.to_owned()
        } else {
            format!("{base}{{{}}}", rest.join(","))
        };
        let entry = out.entry(name).or_default();
        match (part, le) {
            ("_bucket", Some(bound)) => entry.buckets.push((bound, value)),
            ("_sum", _) => entry.sum = value,
            ("_count", _) => entry.count = value,
            _ => {}
        }
    }
    for series in out.values_mut() {
        series.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    out
}

/// What was recorded between `before` and `after`, by service and series.
pub fn between(before: &Snapshot, after: &Snapshot) -> Vec<Hop> {
    let mut hops: Vec<Hop> = after
        .iter()
        .filter_map(|((service, series), now)| {
            let then = before.get(&(service.clone(), series.clone()));
            let count = now.count - then.map_or(0.0, |t| t.count);
            if count < 1.0 {
                return None;
            }
            let sum = now.sum - then.map_or(0.0, |t| t.sum);
            let buckets: Vec<(f64, f64)> = now
                .buckets
                .iter()
                .map(|&(bound, n)| {
                    let earlier = then
                        .and_then(|t| t.buckets.iter().find(|(b, _)| *b == bound))
                        .map_or(0.0, |(_, n)| *n);
                    (bound, n - earlier)
                })
                .collect();
            let under = |q: f64| {
                buckets
                    .iter()
                    .find(|(_, n)| *n >= q * count)
                    .map_or(f64::INFINITY, |(bound, _)| *bound)
            };
            Some(Hop {
                service: service.clone(),
                series: series.clone(),
                count: count as u64,
                mean: Duration::from_secs_f64((sum / count).max(0.0)),
                p50_under: under(0.5),
                p99_under: under(0.99),
            })
        })
        .collect();
    hops.sort_by(|a, b| (&a.service, &a.series).cmp(&(&b.service, &b.series)));
    hops
}

/// The hops as report lines (nothing when no service was read).
pub fn report(hops: &[Hop]) -> String {
    let mut out = String::new();
    if hops.is_empty() {
        return out;
    }
    let names: Vec<String> = hops.iter().map(|h| format!("{} {}", h.service, h.series)).collect();
    let title = "hops (the services' histograms)";
    let width = names.iter().map(|n| n.chars().count()).fold(title.len(), usize::max);
    let _ = writeln!(
        out,
        "  {title:<width$} {:>7} {:>9} {:>8} {:>8}",
        "count", "mean", "p50 ≤", "p99 ≤"
    );
    let bound = |b: f64| {
        if b.is_infinite() {
            "inf".to_owned()
        } else {
            format!("{} ms", b * 1000.0)
        }
    };
    for (hop, what) in hops.iter().zip(&names) {
        if is_batch(&hop.series) {
            // Items per statement, not time: the mean is in `mean`'s seconds.
            let _ = writeln!(
                out,
                "  {:<width$} {:>7} {:>6.2} items {:>6} {:>8}",
                what,
                hop.count,
                hop.mean.as_secs_f64(),
                "",
                ""
            );
            continue;
        }
        let _ = writeln!(
            out,
            "  {:<width$} {:>7} {:>6.2} ms {:>8} {:>8}",
            what,
            hop.count,
            hop.mean.as_secs_f64() * 1000.0,
            bound(hop.p50_under),
            bound(hop.p99_under)
        );
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const BEFORE: &str = r#"# TYPE vigil_rpc_handler_seconds histogram
vigil_rpc_handler_seconds_bucket{subject="start",le="0.001"} 1
vigil_rpc_handler_seconds_bucket{subject="start",le="0.005"} 2
vigil_rpc_handler_seconds_bucket{subject="start",le="+Inf"} 2
vigil_rpc_handler_seconds_sum{subject="start"} 0.004
vigil_rpc_handler_seconds_count{subject="start"} 2
vigil_decisions_total{api="grpc"} 7
"#;

    const AFTER: &str = r#"vigil_rpc_handler_seconds_bucket{subject="start",le="0.001"} 51
vigil_rpc_handler_seconds_bucket{subject="start",le="0.005"} 100
vigil_rpc_handler_seconds_bucket{subject="start",le="+Inf"} 102
vigil_rpc_handler_seconds_sum{subject="start"} 0.304
vigil_rpc_handler_seconds_count{subject="start"} 102
vigil_gateway_agent_check_seconds_bucket{le="0.001"} 3
vigil_gateway_agent_check_seconds_bucket{le="+Inf"} 3
vigil_gateway_agent_check_seconds_sum 0.0015
vigil_gateway_agent_check_seconds_count 3
vigil_decisions_total{api="grpc"} 107
"#;

    fn snapshot(text: &str) -> Snapshot {
        parse(text)
            .into_iter()
            .map(|(series, h)| (("challenge".to_owned(), series), h))
            .collect()
    }

    #[test]
    fn backlog_gauges_are_read_and_only_what_waits_is_reported() {
        let text = "# TYPE vigil_outbox_backlog gauge\nvigil_outbox_backlog 50941\n\
                    vigil_outbox_oldest_age_seconds 12.5\n\
                    vigil_consumer_pending_messages{consumer=\"billing-usage\"} 0\n\
                    vigil_outbox_relayed_total 9\n";
        let parsed = super::parse_backlog(text);
        assert_eq!(
            parsed,
            vec![
                ("vigil_outbox_backlog".to_owned(), 50941.0),
                ("vigil_outbox_oldest_age_seconds".to_owned(), 12.5),
                (
                    "vigil_consumer_pending_messages{consumer=\"billing-usage\"}".to_owned(),
                    0.0
                ),
            ]
        );
        let backlog: super::Backlog = parsed
            .into_iter()
            .map(|(s, v)| ("challenge".to_owned(), s, v))
            .collect();
        let report = super::report_backlog(&backlog);
        assert!(report.contains("challenge vigil_outbox_backlog 50941"), "{report}");
        assert!(
            !report.contains("billing-usage"),
            "an empty queue is not listed: {report}"
        );
        let empty: super::Backlog = vec![("billing".to_owned(), "vigil_outbox_backlog".to_owned(), 0.0)];
        assert!(super::report_backlog(&empty).contains("none"));
        assert_eq!(super::report_backlog(&Vec::new()), "", "no metrics read, no line");
    }

    #[test]
    fn only_latency_histograms_are_read_with_their_labels_but_not_le() {
        let parsed = parse(AFTER);
        let names: Vec<&str> = parsed.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "vigil_gateway_agent_check_seconds",
                "vigil_rpc_handler_seconds{subject=\"start\"}"
            ]
        );
        let start = &parsed["vigil_rpc_handler_seconds{subject=\"start\"}"];
        assert_eq!(start.buckets, [(0.001, 51.0), (0.005, 100.0), (f64::INFINITY, 102.0)]);
        assert_eq!((start.sum, start.count), (0.304, 102.0));
    }

    #[test]
    fn a_hop_is_what_was_recorded_between_the_two_reads() {
        let hops = between(&snapshot(BEFORE), &snapshot(AFTER));
        let start = hops.iter().find(|h| h.series.contains("start")).unwrap();
        // 100 requests, 0.3 s in all; 50 under 1 ms, 98 under 5 ms, 2 over.
        assert_eq!(start.count, 100);
        assert!((start.mean.as_secs_f64() - 0.003).abs() < 1e-9, "{:?}", start.mean);
        assert_eq!(start.p50_under, 0.001);
        assert_eq!(start.p99_under, f64::INFINITY);
        // A series new since the first read counts from zero.
        let check = hops.iter().find(|h| h.series.contains("agent_check")).unwrap();
        assert_eq!((check.count, check.p99_under), (3, 0.001));
        // In the order of their names.
        assert_eq!(hops[0].series, check.series);
    }

    #[test]
    fn batch_sizes_are_reported_as_items_per_statement() {
        let before = "vigil_batch_size{batch=\"agent_nonces\",quantile=\"0.5\"} 1\n\
                      vigil_batch_size_sum{batch=\"agent_nonces\"} 10\n\
                      vigil_batch_size_count{batch=\"agent_nonces\"} 10\n\
                      vigil_batch_size_other_sum 5\n";
        let after = "vigil_batch_size{batch=\"agent_nonces\",quantile=\"0.5\"} 3\n\
                     vigil_batch_size_sum{batch=\"agent_nonces\"} 310\n\
                     vigil_batch_size_count{batch=\"agent_nonces\"} 110\n\
                     vigil_batch_size_other_sum 9\n\
                     vigil_batch_size_other_count 2\n";
        let hops = between(&snapshot(before), &snapshot(after));
        assert_eq!(hops.len(), 1, "{hops:?}");
        assert_eq!(hops[0].count, 100);
        let text = report(&hops);
        assert!(
            text.contains("challenge vigil_batch_size{batch=\"agent_nonces\"}") && text.contains("3.00 items"),
            "300 items in 100 statements: {text}"
        );
        assert!(!text.contains(" ms"), "{text}");
    }

    #[test]
    fn a_hop_with_nothing_recorded_during_the_run_is_left_out() {
        assert!(between(&snapshot(AFTER), &snapshot(AFTER)).is_empty());
        assert_eq!(report(&[]), "");
    }

    #[test]
    fn the_report_names_each_hop_and_its_bounds() {
        let hops = between(&snapshot(BEFORE), &snapshot(AFTER));
        let text = report(&hops);
        assert!(
            text.contains("challenge vigil_rpc_handler_seconds{subject=\"start\"}"),
            "{text}"
        );
        assert!(text.contains("1 ms"), "{text}");
        assert!(text.contains("inf"), "{text}");
    }
}
