#!/usr/bin/env python3
"""Draws bench/curves.sh's CSV (default docs/curves.csv) as three SVG charts in docs/: each job's time, peak RSS
and rows written against the number of users, on log-log axes (a straight line of slope 1 is linear growth).
Plain SVG, no plotting library. Usage: bench/curves.py [CSV] [OUT_DIR]"""

import csv
import math
import sys
from collections import defaultdict
from pathlib import Path

COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#393b79", "#637939", "#843c39", "#000000"]
WIDTH, HEIGHT = 900, 520
LEFT, RIGHT, TOP, BOTTOM = 80, 330, 40, 60


def decades(low, high):
    first, last = math.floor(math.log10(low)), math.ceil(math.log10(high))
    if first == last:
        last += 1
    return first, last


def label(value):
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= size:
            return f"{value / size:g}{unit}"
    return f"{value:g}"


def chart(title, unit, series, path):
    points = [(u, v) for line in series.values() for u, v in line if v > 0]
    if not points:
        return
    x0, x1 = decades(min(u for u, _ in points), max(u for u, _ in points))
    y0, y1 = decades(min(v for _, v in points), max(v for _, v in points))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(u):
        return LEFT + (math.log10(u) - x0) / (x1 - x0) * plot_w

    def y(v):
        return TOP + plot_h - (math.log10(v) - y0) / (y1 - y0) * plot_h

    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
           f'font-family="sans-serif" font-size="12">',
           f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
           f'<text x="{LEFT}" y="24" font-size="15" font-weight="bold">{title}</text>']
    for d in range(x0, x1 + 1):
        svg.append(f'<line x1="{x(10 ** d):.1f}" y1="{TOP}" x2="{x(10 ** d):.1f}" y2="{TOP + plot_h}" stroke="#ddd"/>')
        svg.append(f'<text x="{x(10 ** d):.1f}" y="{TOP + plot_h + 18}" text-anchor="middle">{label(10 ** d)}</text>')
    for d in range(y0, y1 + 1):
        svg.append(f'<line x1="{LEFT}" y1="{y(10 ** d):.1f}" x2="{LEFT + plot_w}" y2="{y(10 ** d):.1f}" stroke="#ddd"/>')
        svg.append(f'<text x="{LEFT - 6}" y="{y(10 ** d) + 4:.1f}" text-anchor="end">{label(10 ** d)}</text>')
    svg.append(f'<text x="{LEFT + plot_w / 2}" y="{HEIGHT - 16}" text-anchor="middle">users</text>')
    svg.append(f'<text transform="translate(18,{TOP + plot_h / 2}) rotate(-90)" text-anchor="middle">{unit}</text>')
    for i, (job, line) in enumerate(sorted(series.items())):
        colour = COLOURS[i % len(COLOURS)]
        line = [(u, v) for u, v in sorted(line) if v > 0]
        if not line:
            continue
        svg.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="'
                   + " ".join(f"{x(u):.1f},{y(v):.1f}" for u, v in line) + '"/>')
        for u, v in line:
            svg.append(f'<circle cx="{x(u):.1f}" cy="{y(v):.1f}" r="3" fill="{colour}"/>')
        legend_y = TOP + 10 + i * 18
        svg.append(f'<line x1="{WIDTH - RIGHT + 20}" y1="{legend_y}" x2="{WIDTH - RIGHT + 40}" y2="{legend_y}" '
                   f'stroke="{colour}" stroke-width="2"/>')
        svg.append(f'<text x="{WIDTH - RIGHT + 46}" y="{legend_y + 4}">{job}</text>')
    svg.append("</svg>")
    path.write_text("\n".join(svg) + "\n")
    print(f"wrote {path}")


def main():
    source = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/curves.csv")
    out = Path(sys.argv[2] if len(sys.argv) > 2 else "docs")
    seconds, rss, written = defaultdict(list), defaultdict(list), defaultdict(list)
    with source.open() as f:
        for row in csv.DictReader(f):
            users = int(row["users"])
            seconds[row["job"]].append((users, float(row["seconds"])))
            rss[row["job"]].append((users, int(row["peak_rss_kb"]) / 1024))
            if row["rows_written"]:
                written[row["job"]].append((users, int(row["rows_written"])))
    chart("Time of each job's run", "seconds", seconds, out / "curves-time.svg")
    chart("Peak RSS of each job's run", "MB", rss, out / "curves-rss.svg")
    chart("Database rows each run wrote (inserted, updated, deleted)", "rows", written, out / "curves-rows.svg")


if __name__ == "__main__":
    main()
