//! The servers' own view of a run: their metrics endpoints read before and
//! after a scenario, and the p99 of `marketplace_request_duration_seconds`
//! per operation over what happened in between, estimated from the histogram
//! buckets as Prometheus's `histogram_quantile` does.

use crate::stats::Side;
use std::collections::BTreeMap;
use std::time::Duration;

const BUCKET: &str = "marketplace_request_duration_seconds_bucket";

/// Cumulative bucket counts by (server, operation): (upper bound, count).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Buckets(BTreeMap<(String, String), Vec<(f64, f64)>>);

/// Reads the duration buckets of every endpoint in `urls`.
///
/// # Errors
/// A message naming the endpoint that did not answer or answered nonsense.
pub fn read(urls: &[String]) -> Result<Buckets, String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    let mut all = Buckets::default();
    for url in urls {
        let text = agent
            .get(url)
            .call()
            .and_then(|mut r| r.body_mut().read_to_string())
            .map_err(|e| format!("metrics at {url}: {e}"))?;
        let one = parse(&text).map_err(|e| format!("metrics at {url}: {e}"))?;
        all.0.extend(one.0);
    }
    Ok(all)
}

/// The value of label `name` in a `{a="x",b="y"}` list (no escapes: our
/// label values never hold quotes).
fn label<'a>(labels: &'a str, name: &str) -> Option<&'a str> {
    labels.split("\",").find_map(|pair| {
        let (key, value) = pair.split_once("=\"")?;
        (key.trim() == name).then(|| value.trim_end_matches('"'))
    })
}

/// The duration buckets of one exposition.
///
/// # Errors
/// A line of the histogram that does not parse.
pub fn parse(text: &str) -> Result<Buckets, String> {
    let mut out: BTreeMap<(String, String), Vec<(f64, f64)>> = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(BUCKET) else {
            continue;
        };
        let bad = || format!("cannot read {line:?}");
        let (labels, value) = rest
            .strip_prefix('{')
            .and_then(|r| r.split_once("} "))
            .ok_or_else(bad)?;
        let server = label(labels, "server").ok_or_else(bad)?;
        let operation = label(labels, "operation").ok_or_else(bad)?;
        let le = match label(labels, "le").ok_or_else(bad)? {
            "+Inf" => f64::INFINITY,
            le => le.parse().map_err(|_| bad())?,
        };
        let count: f64 = value.trim().parse().map_err(|_| bad())?;
        out.entry((server.to_owned(), operation.to_owned()))
            .or_default()
            .push((le, count));
    }
    for buckets in out.values_mut() {
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    Ok(Buckets(out))
}

/// `q`-quantile of cumulative `buckets`, interpolated linearly inside the
/// bucket it falls in (the lowest bucket from 0); the highest finite bound
/// when it falls past them. None without observations.
pub fn quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut lower = (0.0, 0.0);
    for &(bound, count) in buckets {
        if count >= rank {
            if bound.is_infinite() {
                return Some(lower.0);
            }
            let within = count - lower.1;
            let fraction = if within > 0.0 {
                (rank - lower.1) / within
            } else {
                1.0
            };
            return Some(lower.0 + (bound - lower.0) * fraction);
        }
        lower = (bound, count);
    }
    Some(lower.0)
}

/// The server-side p99 (ms) of each side's operations over what happened
/// between `before` and `after`, with `all` for every operation of a side.
pub fn p99_between(before: &Buckets, after: &Buckets) -> BTreeMap<Side, BTreeMap<String, f64>> {
    let mut out: BTreeMap<Side, BTreeMap<String, f64>> = BTreeMap::new();
    let mut all: BTreeMap<Side, Vec<(f64, f64)>> = BTreeMap::new();
    for ((server, operation), now) in &after.0 {
        let side = match server.as_str() {
            "seller" => Side::Seller,
            "buyer" => Side::Buyer,
            _ => continue,
        };
        let then = before.0.get(&(server.clone(), operation.clone()));
        let delta: Vec<(f64, f64)> = now
            .iter()
            .map(|&(le, count)| {
                let old = then
                    .and_then(|b| b.iter().find(|(l, _)| *l == le))
                    .map_or(0.0, |(_, c)| *c);
                (le, count - old)
            })
            .collect();
        let sum = all
            .entry(side)
            .or_insert_with(|| delta.iter().map(|(le, _)| (*le, 0.0)).collect());
        for (slot, (_, n)) in sum.iter_mut().zip(&delta) {
            slot.1 += n;
        }
        if let Some(p99) = quantile(0.99, &delta) {
            out.entry(side)
                .or_default()
                .insert(operation.clone(), p99 * 1000.0);
        }
    }
    for (side, buckets) in all {
        if let Some(p99) = quantile(0.99, &buckets) {
            out.entry(side)
                .or_default()
                .insert("all".into(), p99 * 1000.0);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# TYPE marketplace_request_duration_seconds histogram
marketplace_request_duration_seconds_bucket{server="buyer",operation="GetItem",le="0.001"} 50
marketplace_request_duration_seconds_bucket{server="buyer",operation="GetItem",le="0.0025"} 90
marketplace_request_duration_seconds_bucket{server="buyer",operation="GetItem",le="0.005"} 100
marketplace_request_duration_seconds_bucket{server="buyer",operation="GetItem",le="+Inf"} 100
marketplace_request_duration_seconds_sum{server="buyer",operation="GetItem"} 0.1
marketplace_requests_total{server="buyer",operation="GetItem",code="OK"} 100
"#;

    #[test]
    fn quantiles_interpolate_inside_their_bucket_like_prometheus() {
        let b = parse(TEXT).unwrap();
        let get = &b.0[&("buyer".to_owned(), "GetItem".to_owned())];
        assert_eq!(get.len(), 4);
        // Rank 99 of 100 is 9/10 of the way through the (2.5 ms, 5 ms] bucket.
        let p99 = quantile(0.99, get).unwrap();
        assert!((p99 - 0.00475).abs() < 1e-9, "{p99}");
        // Rank 25 is halfway through the first bucket, from 0.
        assert!((quantile(0.25, get).unwrap() - 0.0005).abs() < 1e-9);
        assert_eq!(quantile(0.99, &[(0.1, 0.0), (f64::INFINITY, 0.0)]), None);
        // Past every finite bound: the highest finite bound.
        assert_eq!(
            quantile(0.99, &[(0.1, 1.0), (f64::INFINITY, 10.0)]),
            Some(0.1)
        );
    }

    #[test]
    fn only_what_happened_between_the_scrapes_counts() {
        let before = parse(TEXT).unwrap();
        // 100 more calls, all of them slow (2.5 to 5 ms).
        let after = parse(&TEXT.replace("} 100\n", "} 200\n")).unwrap();
        let p99 = p99_between(&before, &after);
        let buyer = &p99[&Side::Buyer];
        assert!((buyer["GetItem"] - 4.975).abs() < 1e-6, "{buyer:?}");
        assert_eq!(buyer["all"], buyer["GetItem"]);
        assert!(!p99.contains_key(&Side::Seller));
        assert!(parse("marketplace_request_duration_seconds_bucket{server=\"b\"} x").is_err());
    }
}
