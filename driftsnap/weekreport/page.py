"""``index.html``: the report document as one self-contained page (inline CSS, no script).

Every value that reaches the page goes through :func:`html.escape` (quotes included): authorities,
names and market names are untrusted text from the chain and from operators. Money is printed
exactly (micro-USDC integers as USDC with six decimals); the charts are ``<img>`` elements with
relative paths to the PNG files next to the page.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

from driftsnap.scoring import payouts

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

SELF_MATCHES_CSV = "self_matches.csv"  # every self-matched fill, next to the page

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 78em; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.9em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f4f4f4; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
code, .key { font-family: ui-monospace, monospace; font-size: 0.9em; word-break: break-all; }
.banner { background: #fff3cd; border: 2px solid #d39e00; padding: 0.8em; font-weight: bold; }
.note { color: #555; } img { max-width: 100%; height: auto; border: 1px solid #eee; }
"""


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _pct(share: float) -> str:
    return f"{100 * share:.4f} %"


class _Cell:
    """A table cell: escaped text, right-aligned when numeric, monospace for keys."""

    __slots__ = ("kind", "text")

    def __init__(self, text: object, kind: str = "") -> None:
        self.text, self.kind = text, kind

    def render(self) -> str:
        if self.kind == "n":
            return f'<td class="n">{_e(self.text)}</td>'
        if self.kind == "key":
            return f'<td><span class="key">{_e(self.text)}</span></td>'
        return f"<td>{_e(self.text)}</td>"


def _n(text: object) -> _Cell:
    return _Cell(text, "n")


def _key(text: object) -> _Cell:
    return _Cell(text, "key")


def _table(headers: Sequence[str], rows: Iterable[Sequence[_Cell | str]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(c.render() if isinstance(c, _Cell) else f"<td>{_e(c)}</td>" for c in row)
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _facts(pairs: Iterable[tuple[str, object]]) -> str:
    return _table(["", ""], ([k, _key(v)] for k, v in pairs)).replace(
        "<thead><tr><th></th><th></th></tr></thead>", ""
    )


def _img(doc: Mapping[str, Any], kind: str, subject: str | None = None) -> str:
    for chart in doc["charts"]:
        if chart["kind"] == kind and chart.get("subject") == subject:
            return (
                f'<p><img src="{_e(chart["file"])}" width="{int(chart["width"])}" '
                f'height="{int(chart["height"])}" alt="{_e(chart["title"])}"></p>'
            )
    return ""


def _who(authority: str, name: str) -> str:
    return f"{authority} ({name})" if name else authority


def render(doc: Mapping[str, Any]) -> str:
    """The whole page."""
    week = doc["week"]
    state = "provisional" if doc["provisional"] else "closed"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>driftsnap week report {_e(week)} ({state})</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>Week {_e(week)}: maker incentive report</h1>",
        f'<p class="note">{_e(doc["week_start"])} to {_e(doc["week_end"])} (exclusive), method '
        f"<code>{_e(doc['method'])}</code>, params_hash <code>{_e(doc['params_hash'])}</code></p>",
    ]
    if doc["provisional"]:
        parts.append(
            '<div class="banner">PROVISIONAL: this week is not closed. These figures come from a '
            "dry run of <code>driftsnap close-week</code> and will change until the week is "
            "closed; nothing here is a payout.</div>"
        )
        if doc["refusals"]:
            parts.append("<p>A close now would be refused:</p><ul>")
            parts += [f"<li>{_e(r)}</li>" for r in doc["refusals"]]
            parts.append("</ul>")
    parts += _summary(doc)
    if doc["maker"] is not None:
        parts += _maker(doc, doc["maker"])
    parts += _payouts(doc)
    parts += _pools(doc)
    parts += _volume(doc)
    parts += _uptime(doc)
    parts += _coverage(doc)
    parts += _self_matches(doc)
    parts += _digests(doc)
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _summary(doc: Mapping[str, Any]) -> list[str]:
    c = doc["close"]
    out = ["<h2>Summary</h2>"]
    facts: list[tuple[str, object]] = [
        ("state", "provisional (dry run)" if doc["provisional"] else f"closed {c['closed_at']}"),
        ("unallocated", f"{payouts.usdc(doc['unallocated_micro_usdc'])} USDC"),
        ("volume pool", f"{payouts.usdc(doc['terms']['volume_pool_micro_usdc'])} USDC"),
        ("participants", _participants(doc["terms"]["registered"])),
        ("forfeited", ", ".join(doc["terms"]["forfeited"]) or "(none)"),
    ]
    if doc["paused"]:
        facts.append(("paused", doc["pause_reason"] or "yes"))
    if c["forced"]:
        facts.append(("forced", c["force_reason"]))
        facts += [("overridden", r) for r in c["overridden"]]
    out.append(_facts(facts))
    out += [f'<p class="note">{_e(n)}</p>' for n in doc["notes"]]
    return out


def _participants(registered: list[str] | None) -> str:
    if registered is None:
        return "every maker"
    return ", ".join(registered) or "(none)"


def _payouts(doc: Mapping[str, Any]) -> list[str]:
    rows = doc["payouts"]
    markets = list(rows[0]["score_micro_usdc"]) if rows else []
    out = ["<h2>Payouts (USDC)</h2>"]
    if not rows:
        return [*out, "<p>Nothing is paid this week.</p>"]
    out.append(
        _table(
            ["authority", "name", *markets, "volume", "total"],
            (
                [_key(r["authority"]), r["name"],
                 *(_n(payouts.usdc(r["score_micro_usdc"][m])) for m in markets),
                 _n(payouts.usdc(r["volume_micro_usdc"])), _n(payouts.usdc(r["total_micro_usdc"]))]
                for r in rows
            ),
        )
    )  # fmt: skip
    return out


def _pools(doc: Mapping[str, Any]) -> list[str]:
    out = ["<h2>Score pools</h2>"]
    if doc["not_sampled"]:
        # Markets the program names at pool 0 and the daemon never read: one line, not a table.
        out.append(
            f'<p class="note">Not sampled (pool 0): {_e(", ".join(doc["not_sampled"]))}.</p>'
        )
    for p in doc["pools"]:
        out.append(f"<h3>{_e(p['pool'])}</h3>")
        out.append(
            f"<p>pool {_e(payouts.usdc(p['pool_micro_usdc']))} USDC, paid "
            f"{_e(payouts.usdc(p['paid_micro_usdc']))}, unallocated "
            f"{_e(payouts.usdc(p['unallocated_micro_usdc']))}; {_e(p['snapshots'])} snapshots</p>"
        )
        out.append(_img(doc, "share", p["pool"]))
        out.append(
            _table(
                ["maker", "authority", "name", "MMScore", "participant", "share", "reward USDC",
                 "two-sided uptime"],
                (
                    [_key(m["maker"]), _key(m["authority"]), m["name"], _n(m["weight"]),
                     "yes" if m["participant"] else "no", _n(_pct(m["share"])),
                     _n(payouts.usdc(m["reward_micro_usdc"])), _n(_pct(m["uptime"]))]
                    for m in p["makers"]
                ),
            )
        )  # fmt: skip
    return out


def _volume(doc: Mapping[str, Any]) -> list[str]:
    v = doc["volume"]
    return [
        "<h2>Volume</h2>",
        f"<p>pool {_e(payouts.usdc(v['pool_micro_usdc']))} USDC, "
        f"paid {_e(payouts.usdc(v['paid_micro_usdc']))}, "
        f"unallocated {_e(payouts.usdc(v['unallocated_micro_usdc']))}; "
        "maker volume in USDC over all markets, self-matches excluded</p>",
        _table(
            ["authority", "name", "maker volume USDC", "participant", "volume share",
             "reward USDC"],
            (
                [_key(m["authority"]), m["name"], _n(payouts.usdc(m["volume_micro_usdc"])),
                 "yes" if m["participant"] else "no", _n(_pct(m["share"])),
                 _n(payouts.usdc(m["reward_micro_usdc"]))]
                for m in v["makers"]
            ),
        ),
    ]  # fmt: skip


def _uptime(doc: Mapping[str, Any]) -> list[str]:
    u = doc["uptime"]
    markets = list(u["markets"])
    authorities = sorted({a for m in u["markets"].values() for a in m["makers"]})
    return [
        "<h2>Two-sided uptime</h2>",
        f'<p class="note">{_e(u["definition"])}.</p>',
        _img(doc, "uptime"),
        _table(
            ["authority", *(f"{m} ({u['markets'][m]['snapshots']} ok)" for m in markets)],
            (
                [_key(a), *(_n(_uptime_cell(u["markets"][m]["makers"].get(a))) for m in markets)]
                for a in authorities
            ),
        ),
    ]


def _uptime_cell(entry: Mapping[str, Any] | None) -> str:
    if entry is None:
        return "-"
    return f"{_pct(entry['uptime'])} ({entry['two_sided']})"


def _coverage(doc: Mapping[str, Any]) -> list[str]:
    return [
        "<h2>Coverage</h2>",
        _img(doc, "coverage"),
        _table(
            ["market", "ticks", "ok", "rejected", "missed", "coverage"],
            (
                [c["market"], _n(c["ticks"]), _n(c["ok"]), _n(c["rejected"]), _n(c["missed"]),
                 _n(_pct(c["coverage"]))]
                for c in doc["coverage"]
            ),
        ),
    ]  # fmt: skip


def self_match_summary(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per authority: its self-matched fills, their quote (micro-USDC) and markets, most first."""
    by: dict[str, dict[str, Any]] = {}
    for m in rows:
        a = by.setdefault(m["authority"], {"authority": m["authority"], "fills": 0, "quote": 0,
                                            "markets": set()})  # fmt: skip
        a["fills"] += 1
        a["quote"] += m["quote_micro_usdc"]
        a["markets"].add(m["market"] or f"{m['market_type']}-{m['market_index']}")
    out = [{**a, "markets": sorted(a["markets"])} for a in by.values()]
    return sorted(out, key=lambda a: (-a["fills"], a["authority"]))


def _self_matches(doc: Mapping[str, Any]) -> list[str]:
    rows = doc["self_matches"]
    out = ["<h2>Self-matches</h2>"]
    if not rows:
        return [*out, "<p>No self-matched fills this week.</p>"]
    # One line per wallet, not per fill: a busy week has hundreds of them, which made the page
    # tens of thousands of pixels tall. Every fill, with its signature, is in the CSV.
    summary = self_match_summary(rows)
    out.append(
        f"<p>{len(rows):,} fill(s) whose maker and taker share an authority, excluded from "
        f"volume, by {len(summary):,} authorit{'y' if len(summary) == 1 else 'ies'}. Every "
        f'fill, with its signature: <a href="{SELF_MATCHES_CSV}">{SELF_MATCHES_CSV}</a> '
        "(and report.json).</p>"
    )
    out.append(
        _table(
            ["authority", "fills", "quote USDC", "markets"],
            (
                [_key(a["authority"]), _n(a["fills"]), _n(payouts.usdc(a["quote"])),
                 ", ".join(a["markets"])]
                for a in summary
            ),
        )
    )  # fmt: skip
    return out


def _digests(doc: Mapping[str, Any]) -> list[str]:
    c = doc["close"]
    return [
        "<h2>Digests</h2>",
        '<p class="note">Anyone holding the week\'s stored books and fills can recompute these '
        "with <code>driftsnap verify-week</code>.</p>",
        _facts(
            [
                ("result digest", c["digest"]),
                ("result sha256", c["result_sha256"]),
                ("params_hash", c["params_hash"]),
                ("seed", c["seed"] or "(not revealed)"),
                ("seed sha256", c["seed_sha256"] or "-"),
                ("books Merkle root", f"{c['books_root']} ({c['books']} books)"),
                ("fills digest", f"{c['fills_digest']} ({c['fills']} fills)"),
                ("program digest", c["program_digest"]),
            ]
        ),
    ]


def _maker(doc: Mapping[str, Any], m: Mapping[str, Any]) -> list[str]:
    out = [
        f'<h2>Maker <span class="key">{_e(_who(m["authority"], m["name"]))}</span></h2>',
        _facts(
            [
                ("total payout", f"{payouts.usdc(m['total_micro_usdc'])} USDC"),
                ("forfeited", "yes" if m["forfeited"] else "no"),
                ("self-matched fills", m["self_matches"]),
            ]
            + (
                []
                if m["volume"] is None
                else [
                    ("maker volume", f"{payouts.usdc(m['volume']['volume_micro_usdc'])} USDC"),
                    ("volume share", _pct(m["volume"]["share"])),
                    ("volume reward", f"{payouts.usdc(m['volume']['reward_micro_usdc'])} USDC"),
                ]
            )
        ),
    ]
    if m["markets"]:
        out.append(
            _table(
                ["market", "MMScore", "rank", "share", "reward USDC", "quoted snapshots",
                 "two-sided uptime"],
                (
                    [x["market"], _n(x["weight"]),
                     _n("-" if x["rank"] is None else f"{x['rank']} of {x['of']}"),
                     _n(_pct(x["share"])), _n(payouts.usdc(x["reward_micro_usdc"])),
                     _n(f"{x['quoted_snapshots']} of {x['snapshots']}"), _n(_pct(x["uptime"]))]
                    for x in m["markets"]
                ),
            )
        )  # fmt: skip
    for x in m["markets"]:
        out.append(f"<h3>{_e(x['market'])}: score per snapshot by bracket and side</h3>")
        out.append(_img(doc, "maker", x["market"]))
        out.append(
            '<p class="note">The week by bracket and side: what each added to the maker\'s '
            f"MMScore ({_e(x['score_total'])} summed from the stored snapshot scores).</p>"
        )
        brackets = sorted(x["brackets_total"])
        out.append(
            _table(
                ["side", *brackets, "total"],
                (
                    [side, *(_n(f"{x['brackets_total'][b][side]:.6f}") for b in brackets),
                     _n(f"{sum(x['brackets_total'][b][side] for b in brackets):.6f}")]
                    for side in ("bid", "ask")
                ),
            )
        )  # fmt: skip
    return out
