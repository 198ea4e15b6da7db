#!/usr/bin/env python3
"""Draws the pipeline benchmark's result as an SVG (no dependencies): where the CPU of one round
goes, per process, for the whole pipeline and for the plain `_bulk` baseline, and the two rates.

Usage (bench/pipeline.sh calls it):
  chart.py OUT.svg TITLE PIPE_RATE BASE_RATE name=cpu_s ... -- name=cpu_s ...
Segments before `--` are the pipeline's processes, after it the baseline's.
"""
import html
import sys

COLORS = {
    "elasticsearch": "#4e79a7",
    "workers": "#f28e2b",
    "redis": "#e15759",
    "consumer": "#76b7b2",
    "producer": "#59a14f",
    "baseline tool": "#b07aa1",
}


def parse(items):
    out = []
    for item in items:
        name, _, value = item.partition("=")
        out.append((name.replace("_", " "), float(value)))
    return out


def main(argv):
    if len(argv) < 6 or "--" not in argv:
        sys.exit(__doc__)
    out, title, pipe_rate, base_rate = argv[1], argv[2], float(argv[3]), float(argv[4])
    split = argv.index("--")
    rows = [("pipeline", parse(argv[5:split])), ("plain _bulk", parse(argv[split + 1:]))]

    width, left, right = 800, 110, 100
    bar_h, gap = 34, 18
    plot_w = width - left - right
    max_cpu = max(sum(v for _, v in segs) for _, segs in rows) or 1.0
    max_rate = max(pipe_rate, base_rate) or 1.0
    y = 56
    parts = [
        f'<text x="{left}" y="24" font-size="15" font-weight="bold">{html.escape(title)}</text>',
        f'<text x="{left}" y="44" font-size="12" fill="#555">CPU seconds of one round, per process '
        f'(both loads keep the two cores busy, so CPU needed bounds the rate)</text>',
    ]
    for label, segs in rows:
        parts.append(f'<text x="{left - 8}" y="{y + bar_h / 2 + 4}" font-size="12" '
                     f'text-anchor="end">{html.escape(label)}</text>')
        x = left
        for name, value in segs:
            w = plot_w * value / max_cpu
            color = COLORS.get(name, "#bab0ac")
            parts.append(f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{color}">'
                         f'<title>{html.escape(name)}: {value:.2f} CPU-s</title></rect>')
            if w > 34:
                parts.append(f'<text x="{x + w / 2:.1f}" y="{y + bar_h / 2 + 4}" font-size="11" '
                             f'fill="white" text-anchor="middle">{value:.2f}</text>')
            x += w
        total = sum(v for _, v in segs)
        parts.append(f'<text x="{x + 4:.1f}" y="{y + bar_h / 2 + 4}" font-size="11">'
                     f'{total:.2f} s</text>')
        y += bar_h + gap
    # legend
    lx = left
    names = []
    for _, segs in rows:
        for name, _ in segs:
            if name not in names:
                names.append(name)
    for name in names:
        parts.append(f'<rect x="{lx}" y="{y - 6}" width="10" height="10" '
                     f'fill="{COLORS.get(name, "#bab0ac")}"/>')
        parts.append(f'<text x="{lx + 14}" y="{y + 3}" font-size="11">{html.escape(name)}</text>')
        lx += 24 + 7 * len(name)
    y += 30
    parts.append(f'<text x="{left}" y="{y}" font-size="12" fill="#555">Stored documents per second '
                 f'(ratio {pipe_rate / base_rate if base_rate else 0:.2f}; target 0.8)</text>')
    y += 10
    for label, rate in (("pipeline", pipe_rate), ("plain _bulk", base_rate)):
        w = plot_w * rate / max_rate
        parts.append(f'<text x="{left - 8}" y="{y + 14}" font-size="12" '
                     f'text-anchor="end">{html.escape(label)}</text>')
        parts.append(f'<rect x="{left}" y="{y}" width="{w:.1f}" height="20" fill="#9c755f"/>')
        parts.append(f'<text x="{left + w + 4:.1f}" y="{y + 14}" font-size="11">{rate:,.0f}/s</text>')
        y += 28
    height = y + 10
    svg = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="sans-serif">'
           f'<rect width="100%" height="100%" fill="white"/>' + "".join(parts) + "</svg>\n")
    with open(out, "w", encoding="utf-8") as f:
        f.write(svg)


if __name__ == "__main__":
    main(sys.argv)
