"""The evaluation report: one HTML page with plots (SVG), English and Chinese side by side."""

import html
from datetime import datetime, timezone

from moss.evals.suites import SUITES

EN, ZH = "#2563eb", "#dc2626"


def _title(suite: str) -> str:
    return SUITES[suite].title if suite in SUITES else "Language fidelity (all prose answers)"


def bars(summary: dict) -> str:
    """Grouped bars: one group per suite, English and Chinese bars, 0-100%."""
    suites = list(summary)
    width, height, top, left = max(420, 90 * len(suites) + 60), 240, 20, 40
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height + 60}" role="img">']
    for pct in (0, 25, 50, 75, 100):
        y = top + height - height * pct / 100
        out.append(f'<line x1="{left}" x2="{width}" y1="{y}" y2="{y}" stroke="#ddd"/>'
                   f'<text x="{left - 6}" y="{y + 4}" font-size="10" text-anchor="end">{pct}%</text>')
    for i, suite in enumerate(suites):
        x = left + 20 + 90 * i
        for j, (lang, colour) in enumerate((("en", EN), ("zh", ZH))):
            cell = summary[suite].get(lang)
            if cell is None:
                continue
            h = height * cell["score"]
            out.append(f'<rect x="{x + 28 * j}" y="{top + height - h}" width="26" height="{h}" fill="{colour}">'
                       f'<title>{suite} {lang}: {cell["score"]:.0%} of {cell["n"]}</title></rect>'
                       f'<text x="{x + 28 * j + 13}" y="{top + height - h - 3}" font-size="9" '
                       f'text-anchor="middle">{cell["score"]:.0%}</text>')
        out.append(f'<text x="{x + 27}" y="{top + height + 16}" font-size="11" text-anchor="middle">'
                   f'{html.escape(suite)}</text>')
    out.append(_legend(left, top + height + 40))
    return "".join(out) + "</svg>"


def lines(results: list[dict], suite: str) -> str:
    """One suite's score over versions (oldest first), English and Chinese lines."""
    width, height, top, left = 420, 160, 14, 40
    step = (width - left - 30) / max(1, len(results) - 1)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height + 50}" role="img">',
           f'<rect x="{left}" y="{top}" width="{width - left - 20}" height="{height}" fill="none" stroke="#ddd"/>',
           f'<text x="{left - 4}" y="{top + 4}" font-size="9" text-anchor="end">100%</text>'
           f'<text x="{left - 4}" y="{top + height}" font-size="9" text-anchor="end">0%</text>']
    for lang, colour in (("en", EN), ("zh", ZH)):
        points = [(left + 10 + step * i, top + height - height * r["suites"][suite][lang]["score"])
                  for i, r in enumerate(results) if lang in r["suites"].get(suite, {})]
        if points:
            out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="'
                       + " ".join(f"{x:.0f},{y:.0f}" for x, y in points) + '"/>')
            out += [f'<circle cx="{x:.0f}" cy="{y:.0f}" r="3" fill="{colour}"/>' for x, y in points]
    for i, r in enumerate(results):
        out.append(f'<text x="{left + 10 + step * i:.0f}" y="{top + height + 14}" font-size="9" '
                   f'text-anchor="middle">{html.escape(r["version"][:18])}</text>')
    out.append(_legend(left, top + height + 36))
    return "".join(out) + "</svg>"


def _legend(x: int, y: int) -> str:
    return (f'<rect x="{x}" y="{y - 9}" width="10" height="10" fill="{EN}"/><text x="{x + 14}" y="{y}" '
            f'font-size="11">English</text><rect x="{x + 80}" y="{y - 9}" width="10" height="10" fill="{ZH}"/>'
            f'<text x="{x + 94}" y="{y}" font-size="11">中文</text>')


def table(summary: dict) -> str:
    rows = []
    for suite, langs in summary.items():
        cells = "".join(f"<td>{langs[lang]['score']:.1%} <small>(n={langs[lang]['n']})</small></td>"
                        if lang in langs else "<td>—</td>" for lang in ("en", "zh"))
        note = " <small>(lower is better)</small>" if suite in SUITES and SUITES[suite].lower_is_better else ""
        rows.append(f"<tr><td>{html.escape(_title(suite))}{note}</td>{cells}</tr>")
    return "<table><tr><th>suite</th><th>English</th><th>中文</th></tr>" + "".join(rows) + "</table>"


def misses(result: dict, per_suite: int = 2) -> str:
    """A few answers that scored badly, so a person sees what the numbers mean."""
    out = []
    for suite in result["suites"]:
        bad = [r for r in result["items"] if r["suite"] == suite
               and (r["score"] > 0 if suite in SUITES and SUITES[suite].lower_is_better else r["score"] < 1)]
        for row in bad[:per_suite]:
            out.append(f"<details><summary>{html.escape(suite)} ({row['lang']}): "
                       f"{html.escape(row['prompt'][:90])}</summary><pre>{html.escape(row['answer'][:800])}</pre>"
                       "</details>")
    return "".join(out)


def render(results: list[dict]) -> str:
    """The whole report: the latest result of each version, then each suite over versions."""
    latest: dict[str, dict] = {}
    for r in results:
        latest[r["version"]] = r
    ordered = sorted(latest.values(), key=lambda r: r["created"])
    sections = []
    for r in reversed(ordered):
        sections.append(f"<section><h2>{html.escape(r['version'])}</h2><p>{r['created']} · "
                        f"{len(r['items'])} items · {r['seconds']:.0f} s"
                        f"{' · full' if r.get('full') else ''}{' · quick check' if r.get('quick') else ''}</p>"
                        f"{bars(r['suites'])}{table(r['suites'])}<h3>Examples of misses</h3>{misses(r)}</section>")
    trend = ""
    if len(ordered) > 1:
        suites = sorted({s for r in ordered for s in r["suites"]})
        trend = "<section><h2>Version over version</h2>" + "".join(
            f"<figure><figcaption>{html.escape(_title(s))}</figcaption>{lines(ordered, s)}</figure>"
            for s in suites) + "</section>"
    made = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>Moss evaluation</title>
<style>body{{font:14px system-ui,sans-serif;max-width:1000px;margin:24px auto;padding:0 12px;color:#1c1917}}
table{{border-collapse:collapse;margin:10px 0}}td,th{{border:1px solid #ddd;padding:4px 10px;text-align:left}}
figure{{display:inline-block;margin:8px}}pre{{white-space:pre-wrap;background:#f6f8fa;padding:8px}}
section{{border-top:1px solid #ddd;margin-top:18px}}</style></head><body>
<h1>Moss evaluation</h1><p>Generated {made}. Scores are shares of items answered well, English and
Chinese side by side; over-refusal is the share of harmless requests refused.</p>
{trend}{"".join(sections)}</body></html>"""
