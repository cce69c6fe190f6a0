//! The SVG chart: latency percentiles per scenario (log scale) beside system
//! throughput per scenario, with the run conditions in the title. Drawn with
//! plotters' SVG backend, which writes text as SVG text: no fonts are loaded.

use crate::report::Report;
use crate::stats::Side;
use plotters::prelude::*;
use std::path::Path;

const PERCENTILES: [&str; 4] = ["p50", "p90", "p99", "p99.9"];

fn percentiles(report: &Report, scenario: usize) -> [f64; 4] {
    // Over all calls of both sides, per run merged: the slowest side per
    // percentile, so the chart never flatters.
    let s = &report.scenarios[scenario];
    let mut out = [0.0f64; 4];
    for side in [Side::Seller, Side::Buyer] {
        if let Some(all) = s.all_runs.get(&side).and_then(|ops| ops.get("all")) {
            for (i, v) in [all.p50_ms, all.p90_ms, all.p99_ms, all.p999_ms]
                .into_iter()
                .enumerate()
            {
                out[i] = out[i].max(v);
            }
        }
    }
    out
}

/// Writes the chart of `report` to `path`.
///
/// # Errors
/// A message when the file cannot be written.
pub fn write_svg(path: &Path, report: &Report) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| format!("chart {}: {e}", path.display());
    let c = &report.conditions;
    // A git hash reads "commit 1a2b3c"; a label or a version reads as itself.
    let build = if !c.commit.is_empty() && c.commit.chars().all(|ch| ch.is_ascii_hexdigit()) {
        format!("commit {}", c.commit)
    } else {
        c.commit.clone()
    };
    let title = format!(
        "marketplace loadgen: mix {}, {} calls per client, {} run{}, {} CPUs, {}, {build}",
        c.mix,
        c.calls_per_client,
        c.runs,
        if c.runs == 1 { "" } else { "s" },
        c.cpus,
        c.target
    );
    let root = SVGBackend::new(path, (1280, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let root = root
        .titled(&title, ("sans-serif", 18))
        .map_err(|e| err(&e))?;
    let (left, right) = root.split_horizontally(760);

    let lines: Vec<[f64; 4]> = (0..report.scenarios.len())
        .map(|i| percentiles(report, i))
        .collect();
    let top = lines.iter().flatten().copied().fold(1.0f64, f64::max) * 2.0;
    let bottom = lines
        .iter()
        .flatten()
        .copied()
        .filter(|v| *v > 0.0)
        .fold(top, f64::min)
        / 2.0;
    let mut chart = ChartBuilder::on(&left)
        .caption(
            "latency percentiles, ms (log scale, slower side)",
            ("sans-serif", 16),
        )
        .margin(16)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d(-0.2f64..3.2f64, (bottom.max(0.001)..top).log_scale())
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_labels(4)
        .x_label_formatter(&|x| {
            PERCENTILES
                .get(x.round() as usize)
                .map_or_else(String::new, |p| (*p).to_owned())
        })
        .y_desc("ms")
        .draw()
        .map_err(|e| err(&e))?;
    for (i, values) in lines.iter().enumerate() {
        let color = Palette99::pick(i).mix(0.9);
        let points: Vec<(f64, f64)> = values
            .iter()
            .enumerate()
            .map(|(x, v)| (x as f64, v.max(bottom.max(0.001))))
            .collect();
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(3)))
            .map_err(|e| err(&e))?
            .label(report.scenarios[i].scenario.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(3))
            });
        chart
            .draw_series(
                points
                    .into_iter()
                    .map(|p| Circle::new(p, 4, color.filled())),
            )
            .map_err(|e| err(&e))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(|e| err(&e))?;

    let rates: Vec<f64> = report
        .scenarios
        .iter()
        .map(|s| s.system_throughput_mean)
        .collect();
    let most = rates.iter().copied().fold(1.0f64, f64::max) * 1.15;
    let n = report.scenarios.len().max(1);
    let mut bars = ChartBuilder::on(&right)
        .caption(
            "system throughput, ops/s (mean of runs)",
            ("sans-serif", 16),
        )
        .margin(16)
        .x_label_area_size(36)
        .y_label_area_size(72)
        .build_cartesian_2d(0f64..n as f64, 0f64..most)
        .map_err(|e| err(&e))?;
    bars.configure_mesh()
        .x_labels(0)
        .disable_x_mesh()
        .y_desc("ops/s")
        .draw()
        .map_err(|e| err(&e))?;
    bars.draw_series(rates.iter().enumerate().map(|(i, rate)| {
        Rectangle::new(
            [(i as f64 + 0.2, 0.0), (i as f64 + 0.8, *rate)],
            Palette99::pick(i).filled(),
        )
    }))
    .map_err(|e| err(&e))?;
    // Each bar's label stands above it, centred: anchored at its bottom, so
    // the text grows upwards and never over the bar.
    let label = ("sans-serif", 14).into_font().into_text_style(&right).pos(
        plotters::style::text_anchor::Pos::new(
            plotters::style::text_anchor::HPos::Center,
            plotters::style::text_anchor::VPos::Bottom,
        ),
    );
    bars.draw_series(report.scenarios.iter().enumerate().map(|(i, s)| {
        Text::new(
            format!("{}: {:.0}", s.scenario, s.system_throughput_mean),
            (i as f64 + 0.5, s.system_throughput_mean + most * 0.02),
            label.clone(),
        )
    }))
    .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}
