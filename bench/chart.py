"""bench.png: req/s and p99 per scenario, one bar per worker count.

Drawn with Pillow, which Streamlit already brings: a chart of ten bars does not justify a
plotting library in the dependencies.
"""

from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from bench.report import SCENARIOS, Measurement

WIDTH, HEIGHT = 1400, 560
PANEL_TOP, PANEL_BOTTOM = 90, 470
COLOURS = ("#4C72B0", "#DD8452", "#55A868", "#C44E52")
INK, GRID = "#222222", "#DDDDDD"


def draw(measurements: list[Measurement], path: Path, *, subtitle: str) -> None:
    image = Image.new("RGB", (WIDTH, HEIGHT), "white")
    canvas = ImageDraw.Draw(image)
    title_font = ImageFont.load_default(size=20)
    font = ImageFont.load_default(size=13)
    canvas.text((30, 14), "make bench: each path under wrk -t2 -c20", fill=INK, font=title_font)
    canvas.text((30, 42), subtitle, fill=INK, font=font)
    workers = sorted({m.workers for m in measurements})
    for index, count in enumerate(workers):
        x = 30 + index * 150
        canvas.rectangle((x, 66, x + 14, 80), fill=COLOURS[index % len(COLOURS)])
        canvas.text((x + 20, 66), f"{count} worker{'s' if count > 1 else ''}", fill=INK, font=font)
    half = WIDTH // 2
    _panel(canvas, font, measurements, workers, (40, half - 20), "requests/s", "rps")
    _panel(canvas, font, measurements, workers, (half + 20, WIDTH - 30), "p99 latency, ms", "p99")
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


def _panel(
    canvas: ImageDraw.ImageDraw,
    font: ImageFont.FreeTypeFont | ImageFont.ImageFont,
    measurements: list[Measurement],
    workers: list[int],
    span: tuple[int, int],
    title: str,
    metric: str,
) -> None:
    left, right = span
    small = ImageFont.load_default(size=11)
    canvas.text((left, PANEL_TOP - 8), title, fill=INK, font=font)
    top = PANEL_TOP + 20
    values: dict[tuple[str, int], float] = {}
    for m in measurements:
        # Bare runs twice per worker count: show the best run, the yardstick the ratios use.
        measured, key = _value(m, metric), (m.scenario, m.workers)
        best = max if metric == "rps" else min
        values[key] = best(values[key], measured) if key in values else measured
    # Headroom above the tallest bar for its label.
    highest = 1.1 * (max(values.values(), default=1.0) or 1.0)
    axis = left + 55  # the scale's labels sit left of it
    for step in range(1, 5):  # light gridlines at quarters of the scale
        y = PANEL_BOTTOM - (PANEL_BOTTOM - top) * step / 4
        canvas.line((axis, y, right, y), fill=GRID)
        scale = f"{highest * step / 4:,.0f}"
        canvas.text((axis - 6, y - 7), scale, fill="#777777", font=font, anchor="ra")
    canvas.line((axis, PANEL_BOTTOM, right, PANEL_BOTTOM), fill=INK)
    scenarios = [s for s in SCENARIOS if any(key[0] == s for key in values)]
    group = (right - axis) / max(1, len(scenarios))
    bar = group * 0.8 / max(1, len(workers))
    for position, scenario in enumerate(scenarios):
        x0 = axis + position * group + group * 0.1
        for index, count in enumerate(workers):
            value = values.get((scenario, count))
            if value is None:
                continue
            x = x0 + index * bar
            y = PANEL_BOTTOM - (PANEL_BOTTOM - top) * value / highest
            canvas.rectangle((x, y, x + bar - 3, PANEL_BOTTOM), fill=COLOURS[index % len(COLOURS)])
            canvas.text(
                (x + (bar - 3) / 2, y - 2), _label(value, metric), fill=INK, font=small, anchor="mb"
            )
        # One word a line, centred under its bars: eight names do not fit side by side.
        centre = x0 + group * 0.4
        name = scenario.replace("_", "\n")
        canvas.multiline_text(
            (centre, PANEL_BOTTOM + 8), name, fill=INK, font=font, anchor="ma", align="center"
        )


def _label(value: float, metric: str) -> str:
    """Short enough to sit over a bar of its own: 14.3k req/s, 2.7 ms."""
    if metric == "rps" and value >= 1000:
        return f"{value / 1000:.1f}k"
    return f"{value:,.0f}" if metric == "rps" else f"{value:.1f}"


def _value(measurement: Measurement, metric: str) -> float:
    load = measurement.load
    return load.requests_per_second if metric == "rps" else load.p99_ms
