"""Plots (matplotlib) and one self-contained HTML report (images inlined) with the verdict at the top."""

from __future__ import annotations

import base64
import html
import io
import multiprocessing
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

from scones.core.files import write_atomic
from scones.monitoring.drift import MIN_RECORDS

PLOTS = ("confidence_over_time.png", "confidence_histogram.png", "class_mix_over_time.png", "drift_panel.png")
OK_COLOUR, DRIFT_COLOUR, UNKNOWN_COLOUR = "#1a7f37", "#cf222e", "#9a6700"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def warm_up() -> None:
    """Import matplotlib and draw one tiny figure (fonts loaded, caches filled), so that the plots do not pay for it:
    `scones monitor` runs this while its workers read the capture. A failure here is left to the plots to report."""
    try:
        plt = _pyplot()
        fig, ax = plt.subplots(figsize=(2, 1))
        ax.plot([0, 1], [0, 1], ".", label="x")
        ax.set_title("x")
        ax.legend()
        fig.savefig(io.BytesIO(), dpi=20, format="png")
        plt.close(fig)
    except Exception:  # only a head start: the plots import and draw again, and say what is wrong
        pass


def _time_axis(frame):
    """Times for the x axis; records without a readable time are placed in arrival order."""
    times = frame["time"]
    if times.notna().all() and times.nunique() > 1:
        return times, "inference time (UTC)"
    return np.arange(len(frame)), "record (in file order)"


def confidence_over_time_figure(frame, threshold: float):
    plt = _pyplot()
    x, xlabel = _time_axis(frame)
    below = frame["confidence"] < threshold
    fig, ax = plt.subplots(figsize=(11, 3.4))
    size = 3 if len(frame) < 5000 else 1  # plot() with markers: scatter() is slow for 100,000 points
    ax.plot(x[~below], frame["confidence"][~below], ".", ms=size, color="#0969da", label="at or above threshold")
    ax.plot(x[below], frame["confidence"][below], ".", ms=size + 1, color=DRIFT_COLOUR, label="below threshold")
    ax.axhline(threshold, color="orange", lw=1.5)
    ax.annotate(
        f"threshold {threshold:g}",
        xy=(0.99, threshold),
        xycoords=("axes fraction", "data"),
        xytext=(0, -14),
        textcoords="offset points",
        ha="right",
        color="darkorange",
        fontsize=10,
        fontweight="bold",
        bbox={"boxstyle": "round", "facecolor": "white", "edgecolor": "darkorange"},
    )
    ax.set_ylim(min(0.45, float(frame["confidence"].min()) - 0.02), 1.02)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("confidence (top probability)")
    ax.set_title(f"confidence over time ({below.mean():.1%} of {len(frame)} below {threshold:g}){_sampled(frame)}")
    ax.legend(loc="lower left", fontsize=8)
    if xlabel.startswith("inference"):
        fig.autofmt_xdate()
    fig.tight_layout()
    return fig


def _save(fig, out: Path, **options) -> Path:
    """The figure as a PNG written whole or not at all (a full disk keeps the previous one)."""
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, dpi=100, format="png", **options)
    finally:
        _pyplot().close(fig)
    return write_atomic(out, buffer.getvalue())


def _sampled(frame) -> str:
    total = frame.attrs.get("of")
    return f", a sample of {len(frame)} of {total} records" if total and total > len(frame) else ""


def plot_confidence_over_time(frame, threshold: float, out: Path) -> Path:
    fig = confidence_over_time_figure(frame, threshold)
    return _save(fig, out)


def plot_confidence_histogram(baseline_frame, frame, threshold: float, out: Path) -> Path:
    plt = _pyplot()
    lo = min(0.5, float(min(baseline_frame["confidence"].min(), frame["confidence"].min())))
    bins = np.linspace(lo, 1.0, 26)
    fig, ax = plt.subplots(figsize=(6, 3.4))
    ax.hist(baseline_frame["confidence"], bins, density=True, alpha=0.55, label=f"baseline (n={len(baseline_frame)})")
    ax.hist(frame["confidence"], bins, density=True, alpha=0.55, label=f"current (n={len(frame)})")
    ax.axvline(threshold, color="orange", lw=1.5, label=f"threshold {threshold:g}")
    ax.set_xlabel("confidence")
    ax.set_ylabel("density")
    ax.set_title("confidence: baseline vs current")
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return _save(fig, out)


def plot_class_mix(frame, labels: list[str], baseline_shares: dict[str, float], out: Path, bins: int = 12) -> Path:
    plt = _pyplot()
    n = len(frame)
    bins = max(1, min(bins, n // 10 or 1))
    groups = np.array_split(np.arange(n), bins)
    shares = np.array([[(frame["predicted"].iloc[g] == c).mean() if len(g) else 0 for g in groups] for c in labels])
    x = np.arange(bins)
    fig, ax = plt.subplots(figsize=(6, 3.4))
    ax.stackplot(x, shares, labels=labels, alpha=0.85)
    cumulative = 0.0
    for label in labels[:-1]:
        cumulative += baseline_shares.get(label, 0.0)
        ax.axhline(cumulative, color="black", ls="--", lw=1)
    ax.set_xlim(0, max(bins - 1, 1))
    ax.set_ylim(0, 1)
    ax.set_xlabel(f"time, in {bins} slices of ~{n // bins} records")
    ax.set_ylabel("share of predictions")
    ax.set_title("class mix over time (dashed: baseline)")
    ax.legend(fontsize=8, loc="upper right", ncol=min(len(labels), 5))
    fig.tight_layout()
    return _save(fig, out)


def plot_drift_panel(checks, out: Path) -> Path:
    plt = _pyplot()
    header = ["check", "test", "statistic", "p-value", "threshold", "verdict"]
    rows = [
        [
            c.name,
            c.test,
            "-" if c.insufficient else f"{c.distance_name}={c.statistic:.3f}",
            "-" if c.insufficient else f"{c.p_value:.1e}",
            c.threshold_text,
            c.verdict,
        ]
        for c in checks
    ]
    fig, ax = plt.subplots(figsize=(11, 0.42 * (len(rows) + 1) + 0.6))
    ax.axis("off")
    table = ax.table(cellText=rows, colLabels=header, loc="center", cellLoc="left", colLoc="left")
    table.auto_set_font_size(False)
    table.set_fontsize(10)
    table.scale(1, 1.5)
    table.auto_set_column_width(list(range(len(header))))
    for i, c in enumerate(checks, start=1):
        cell = table[i, len(header) - 1]
        cell.set_facecolor(UNKNOWN_COLOUR if c.insufficient else DRIFT_COLOUR if c.failed else OK_COLOUR)
        cell.get_text().set_color("white")
        cell.get_text().set_weight("bold")
    ax.set_title("drift checks against the baseline", fontsize=11)
    return _save(fig, out, bbox_inches="tight", pad_inches=0.15)


def write_plots(result, out_dir: Path, meanwhile=None) -> dict[str, Path]:
    """The four plots; with no record analysed, only the checks' panel (there is nothing to draw). `meanwhile`: other
    work of the caller's (records.csv), done here while a second process draws half of the plots."""
    frame, base = result.frame, result.baseline
    frame.attrs["of"] = result.analysed
    shares = base.frame["predicted"].value_counts(normalize=True).to_dict()
    names = ("confidence_over_time", "confidence_histogram", "class_mix", "drift_panel")
    paths = {name: out_dir / file for name, file in zip(names, PLOTS, strict=True)}
    if not len(frame):
        if meanwhile is not None:
            meanwhile()
        return {"drift_panel": plot_drift_panel(result.checks, paths["drift_panel"])}

    def elsewhere() -> None:  # the costliest plot (up to SAMPLE points) and the class mix: ~half the drawing
        plot_confidence_over_time(frame, result.threshold, paths["confidence_over_time"])
        plot_class_mix(frame, base.labels, shares, paths["class_mix"])

    done = beside(elsewhere)
    try:
        if meanwhile is not None:
            meanwhile()
        plot_confidence_histogram(base.frame, frame, result.threshold, paths["confidence_histogram"])
        plot_drift_panel(result.checks, paths["drift_panel"])
    finally:
        done()
    return paths


def beside(work) -> Callable[[], None]:
    """Start `work()` in a process forked from this one (matplotlib and the data already in memory), and return a
    function that waits for it: plots drawn two at a time on two cores. Where forking is not safe or not worth it
    (not Linux, other threads running, one core) `work` runs now, here; where it fails there, it runs again here on
    waiting, so its error is raised (and reported) as if it had never left this process."""
    if sys.platform != "linux" or threading.active_count() > 1 or len(os.sched_getaffinity(0)) < 2:
        work()
        return lambda: None
    child = multiprocessing.get_context("fork").Process(target=_quietly, args=(work,), daemon=True)
    child.start()

    def wait() -> None:
        child.join()
        if child.exitcode != 0:
            work()

    return wait


def _quietly(work) -> None:
    """A forked child's work: exit 1 on any error, without a traceback (the parent does the work again)."""
    try:
        work()
    except BaseException:  # the parent redoes it and reports the error itself
        os._exit(1)


def _img(path: Path, alt: str, wide: bool = False) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    css = ' class="wide"' if wide else ""
    return f'<img{css} alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def write_html(result, plots: dict[str, Path], out: Path) -> Path:
    e = html.escape
    failed, verdict = result.failed, result.verdict
    colour = DRIFT_COLOUR if failed else UNKNOWN_COLOUR if verdict != "OK" else OK_COLOUR
    if failed:
        why = "failed: " + ", ".join(
            f"{c.name} ({c.distance_name}={c.statistic:.3f}, p={c.p_value:.1e})" for c in failed
        )
    elif verdict != "OK":
        why = f"{result.analysed} usable record(s) analysed; the checks need at least {MIN_RECORDS}"
    else:
        why = f"all {len(result.checks)} checks within their thresholds"
    table = result.table
    bad_rows = "".join(f"<tr><td>{e(reason)}</td><td>{n}</td></tr>" for reason, n in table.bad.most_common())
    bad_rows += "".join(
        f"<tr><td>left out: {e(reason)}</td><td>{n}</td></tr>" for reason, n in table.excluded.most_common()
    )
    check_rows = "".join(
        f'<tr><td>{e(c.name)}</td><td>{e(c.test)}</td><td class="num">'
        + ("-" if c.insufficient else f"{c.distance_name}={c.statistic:.4f}")
        + '</td><td class="num">'
        + ("-" if c.insufficient else f"{c.p_value:.2e}")
        + f"</td><td>{e(c.threshold_text)}</td><td>{e(c.detail)}</td>"
        f'<td class="{"drift" if c.failed else "unknown" if c.insufficient else "ok"}">{c.verdict}</td></tr>'
        for c in result.checks
    )
    since_row = (
        f"<tr><th>files before --since (by key), not read</th><td>{table.files_skipped}</td></tr>\n"
        if table.files_skipped
        else ""
    )
    since_row += "".join(f"<tr><th>left out: {e(r)}</th><td>{n}</td></tr>\n" for r, n in table.excluded.items())
    lost = result.capture_lost or {}
    lost_row = (
        "<tr><th>answered by the endpoint, never captured</th><td>"
        + e(", ".join(f"{n} {reason}" for reason, n in lost.items() if n) or "none")
        + "</td></tr>\n"
        if result.capture_lost is not None
        else ""
    )
    sampled = (
        f" (plots and records.csv: a uniform sample of {len(result.frame)})"
        if len(result.frame) < result.analysed
        else ""
    )
    shown = [
        (name, alt, wide)
        for name, alt, wide in (
            ("confidence_over_time", "confidence over time", True),
            ("confidence_histogram", "confidence histogram", False),
            ("class_mix", "class mix over time", False),
            ("drift_panel", "drift panel", True),
        )
        if name in plots
    ]
    reasons = (
        f"<table><tr><th>not parseable or left out, by reason</th><th>records</th></tr>{bad_rows}</table>"
        if bad_rows
        else ""
    )
    images = "\n".join(_img(plots[name], alt, wide=wide) for name, alt, wide in shown)
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>scones monitor: {verdict}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 24px; color: #1f2328; max-width: 1150px; }}
.verdict {{ background: {colour}; color: white; padding: 14px 20px; border-radius: 8px; }}
.verdict h1 {{ margin: 0 0 4px 0; font-size: 28px; }}
table {{ border-collapse: collapse; margin: 8px 0 16px 0; font-size: 14px; }}
td, th {{ border: 1px solid #d0d7de; padding: 4px 10px; text-align: left; }}
td.drift {{ background: {DRIFT_COLOUR}; color: white; font-weight: bold; }}
td.ok {{ background: {OK_COLOUR}; color: white; font-weight: bold; }}
td.unknown {{ background: {UNKNOWN_COLOUR}; color: white; font-weight: bold; }}
.plots {{ display: grid; grid-template-columns: 1fr 1fr; gap: 12px; }}
.plots img {{ width: 100%; border: 1px solid #d0d7de; }}
.plots img.wide {{ grid-column: span 2; }}
td.num {{ white-space: nowrap; }}
.muted {{ color: #656d76; font-size: 13px; }}
</style></head><body>
<div class="verdict"><h1>{verdict}</h1><div>{e(why)}</div></div>
<h2>Records</h2>
<table>
<tr><th>capture</th><td>{e(str(result.capture))}</td></tr>
<tr><th>files read</th><td>{table.files}</td></tr>
<tr><th>records read</th><td>{table.lines}</td></tr>
<tr><th>parsed</th><td>{table.parsed}</td></tr>
<tr><th>not parseable</th><td>{table.unparseable}</td></tr>
{since_row}{lost_row}<tr><th>analysed</th><td>{result.analysed}{sampled}</td></tr>
<tr><th>baseline</th><td>{e(str(result.baseline_source))} ({len(result.baseline.frame)} held-out images)</td></tr>
<tr><th>threshold</th><td>{result.threshold:g}</td></tr>
</table>
{reasons}
<h2>Checks</h2>
<table><tr><th>check</th><th>test</th><th>statistic</th><th>p-value</th><th>fails when</th><th>detail</th>
<th>verdict</th></tr>{check_rows}</table>
<h2>Plots</h2>
<div class="plots">
{images}
</div>
<p class="muted">scones monitor · a check fails when p &lt; 0.01 and its distance exceeds its minimum ·
Model Monitor-format statistics.json, constraints.json, constraint_violations.json beside this file.</p>
</body></html>
"""
    write_atomic(out, page)
    return out


# --- scones monitor --compare: two variants side by side ------------------------------------------------------


def plot_compare_confidence(result, out: Path) -> Path:
    """Both variants' confidence histograms on the same bins, the threshold marked."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.4))
    for side in (result.production, result.candidate):
        values = np.frombuffer(side.confidence)
        ax.hist(values, np.linspace(0, 1, 21), density=True, alpha=0.55, label=f"{side.variant} (n={len(values)})")
    ax.axvline(result.threshold, color="orange", lw=1.5, label=f"threshold {result.threshold:g}")
    ax.set_xlabel("confidence")
    ax.set_ylabel("density")
    ax.set_title(f"confidence: {result.production.variant} vs {result.candidate.variant}")
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return _save(fig, out)


def compare_section(result, plot: Path | None) -> str:
    """The comparison as an HTML section: verdict and its rules, figures side by side, the histograms."""
    e = html.escape
    summary = result.summary()
    p, c = summary["production"], summary["candidate"]
    colour = OK_COLOUR if result.verdict == "promote" else DRIFT_COLOUR

    def cell(value, digits=3):
        return "-" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)

    rows = [
        ("capture", e(p["capture"]), e(c["capture"])),
        ("records", p["records"], c["records"]),
        ("unusable", sum(p["unusable_by_reason"].values()), sum(c["unusable_by_reason"].values())),
        (
            f"low-confidence rate (&lt; {result.threshold:g})",
            cell(p["low_confidence_rate"]),
            cell(c["low_confidence_rate"]),
        ),
        *(
            (f"confidence {q}", cell(p["confidence_quantiles"][q]), cell(c["confidence_quantiles"][q]))
            for q in p["confidence_quantiles"]
        ),
        ("latency p50 (ms)", cell(p["latency_p50_ms"], 2), cell(c["latency_p50_ms"], 2)),
        ("latency p95 (ms)", cell(p["latency_p95_ms"], 2), cell(c["latency_p95_ms"], 2)),
    ]
    body = "".join(f"<tr><th>{name}</th><td>{a}</td><td>{b}</td></tr>" for name, a, b in rows)
    edges = summary["confidence_bins"]
    bins = "".join(
        f"<tr><td>{edges[i]:.2f}–{edges[i + 1]:.2f}</td><td>{a}</td><td>{b}</td></tr>"
        for i, (a, b) in enumerate(zip(p["confidence_histogram"], c["confidence_histogram"], strict=True))
        if a or b
    )
    rules = "".join(f"<li>{e(r)}</li>" for r in summary["rules"])
    image = _img(plot, "confidence histograms of both variants") if plot is not None else ""
    why = e("; ".join(summary["why"]))
    return f"""<section id="compare">
<h2>{e(p["variant"])} vs {e(c["variant"])}</h2>
<div class="verdict" style="background: {colour}"><h1>{e(result.verdict)}</h1><div>{why}</div></div>
<p>agreement on {summary["paired"]} paired request(s): <b>{cell(summary["agreement"])}</b></p>
<table><tr><th></th><th>{e(p["variant"])}</th><th>{e(c["variant"])}</th></tr>{body}</table>
<p>promote when every rule holds:</p><ul>{rules}</ul>
<table><tr><th>confidence</th><th>{e(p["variant"])}</th><th>{e(c["variant"])}</th></tr>{bins}</table>
{image}
</section>"""


def write_compare_html(result, plot: Path | None, out: Path) -> Path:
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>scones monitor --compare: {html.escape(result.verdict)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 24px; color: #1f2328; max-width: 1150px; }}
.verdict {{ color: white; padding: 14px 20px; border-radius: 8px; }}
.verdict h1 {{ margin: 0 0 4px 0; font-size: 28px; }}
table {{ border-collapse: collapse; margin: 8px 0 16px 0; font-size: 14px; }}
td, th {{ border: 1px solid #d0d7de; padding: 4px 10px; text-align: left; }}
img {{ border: 1px solid #d0d7de; }}
</style></head><body>
{compare_section(result, plot)}
<p style="color: #656d76; font-size: 13px;">scones monitor --compare · compare.json beside this file.</p>
</body></html>
"""
    write_atomic(out, page)
    return out


CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking")


def chromium() -> str | None:
    import shutil

    return next((p for n in ("chromium", "chromium-browser", "google-chrome") if (p := shutil.which(n))), None)


def screenshot(page: Path, out: Path, width: int = 1200, height: int = 1750, timeout_s: float = 60) -> Path:
    """Render the HTML report in headless Chromium to a PNG."""
    import subprocess
    import tempfile

    binary = chromium()
    if binary is None:
        raise FileNotFoundError("no chromium binary (apt-get install chromium)")
    with tempfile.TemporaryDirectory(prefix="scones-chromium-") as profile:
        subprocess.run(
            [
                binary,
                *CHROMIUM_FLAGS,
                f"--user-data-dir={profile}",
                "--hide-scrollbars",
                f"--window-size={width},{height}",
                f"--screenshot={out.resolve()}",
                page.resolve().as_uri(),
            ],
            check=True,
            capture_output=True,
            timeout=timeout_s,
        )
    return out
