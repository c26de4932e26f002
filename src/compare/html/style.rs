//! The report's stylesheet, inlined into the page's `<style>`. System fonts only, so the
//! page needs nothing from the network; one column on phones, a grid of charts on screens.

pub(super) const CSS: &str = r#"
:root {
  color-scheme: light;
  --ink: #1f2937; --muted: #6b7280; --line: #e5e7eb; --paper: #ffffff; --wash: #f8fafc;
  --good: #166534; --good-bg: #e7f6ec; --good-line: #86d19e;
  --bad: #991b1b; --bad-bg: #fdecec; --bad-line: #f19999;
  --off: #6b7280; --off-bg: #f3f4f6;
  --warn: #92400e; --warn-bg: #fff7e6; --warn-line: #f59e0b;
  --literature: #b45309;
  --sans: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", "Liberation Sans",
    "DejaVu Sans", Arial, sans-serif;
  --mono: ui-monospace, "SFMono-Regular", Menlo, Consolas, "Liberation Mono",
    "DejaVu Sans Mono", monospace;
}
* { box-sizing: border-box; }
html { background: var(--wash); }
body {
  margin: 0 auto; padding: 2rem clamp(1rem, 3vw, 2.5rem) 3rem; max-width: 1280px;
  font: 15px/1.5 var(--sans); color: var(--ink); background: var(--wash);
}
h1 { font-size: 1.8rem; line-height: 1.2; margin: 0 0 .25rem; letter-spacing: -.01em; }
h2 { font-size: 1.3rem; margin: 2.5rem 0 .75rem; padding-bottom: .3rem;
  border-bottom: 1px solid var(--line); }
h3 { font-size: 1rem; margin: 1.5rem 0 .5rem; }
code { font-family: var(--mono); font-size: .85em; }
small { font-size: .78rem; }
.subtitle { margin: 0 0 1rem; color: var(--muted); }
.muted { color: var(--muted); }

dl.meta { display: flex; flex-wrap: wrap; gap: .25rem 1.75rem; margin: 0 0 1rem; }
dl.meta div { display: flex; gap: .4rem; }
dl.meta dt { color: var(--muted); }
dl.meta dd { margin: 0; font-weight: 600; }

ul.levels { list-style: none; display: flex; flex-wrap: wrap; gap: .5rem; padding: 0;
  margin: 0 0 1rem; }
li.level { display: flex; align-items: center; gap: .45rem; padding: .3rem .7rem;
  border: 1px solid var(--line); border-radius: 999px; background: var(--paper);
  font-weight: 600; }
li.level .state { font-weight: 400; font-size: .8rem; color: var(--good); }
li.level.skipped { border-color: var(--warn-line); background: var(--warn-bg); }
li.level.skipped .state { color: var(--warn); }
.swatch { display: inline-block; width: .75rem; height: .75rem; border-radius: 3px;
  margin-right: .4rem; vertical-align: -1px; }
li.level .swatch { margin-right: 0; }

.headline { display: flex; flex-wrap: wrap; gap: .5rem; margin: 0; }
.pill { padding: .2rem .7rem; border-radius: 999px; background: var(--off-bg);
  font-size: .85rem; }
.pill.good { background: var(--good-bg); color: var(--good); font-weight: 600; }
.pill.bad { background: var(--bad-bg); color: var(--bad); font-weight: 600; }

.callout { margin: 1.25rem 0 0; padding: .8rem 1rem; border-radius: 8px;
  border: 1px solid var(--warn-line); border-left-width: 6px; background: var(--warn-bg);
  color: var(--warn); }
.callout strong { color: #78350f; }
.callout .reason { display: block; margin-top: .2rem; color: var(--ink); }

.summary { margin: 0 0 .75rem; }
.summary.good strong { color: var(--good); }
.summary.bad strong { color: var(--bad); }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; }
table.matrix { width: 100%; min-width: 640px; background: var(--paper);
  border: 1px solid var(--line); border-radius: 8px; }
table.matrix th, table.matrix td { padding: .55rem .7rem; border: 1px solid var(--line);
  text-align: left; vertical-align: top; }
table.matrix thead th { background: var(--wash); font-size: .9rem; }
table.matrix thead th small { display: block; font-weight: 400; color: var(--warn); }
table.matrix tbody th { font-weight: 400; width: 24%; }
.probe-title { display: block; font-weight: 600; }
table.matrix tbody th code { color: var(--muted); }
td.cell { width: 19%; }
td.cell .observed { display: block; font-weight: 600; }
td.cell small { display: block; color: var(--muted); line-height: 1.35; }
td.cell small.expect { margin-top: .15rem; color: inherit; opacity: .85; }
td.cell.expected { background: var(--good-bg); color: var(--good); }
td.cell.unexpected { background: var(--bad-bg); color: var(--bad);
  box-shadow: inset 4px 0 0 var(--bad); }
td.cell.not-run { background: var(--off-bg); color: var(--off); }
td.cell.not-run .observed { font-weight: 400; font-style: italic; }
.legend { display: flex; flex-wrap: wrap; gap: .4rem 1rem; align-items: center;
  color: var(--muted); font-size: .85rem; }
.key { padding: .1rem .5rem; border-radius: 4px; }
.key.expected { background: var(--good-bg); color: var(--good); }
.key.unexpected { background: var(--bad-bg); color: var(--bad); }
.key.not-run { background: var(--off-bg); color: var(--off); }

.note { color: var(--muted); margin: 0 0 1rem; }
.charts { display: grid; gap: 1.25rem;
  grid-template-columns: repeat(auto-fill, minmax(min(100%, 520px), 1fr)); }
figure.chart { margin: 0; padding: 1rem 1rem .75rem; background: var(--paper);
  border: 1px solid var(--line); border-radius: 10px; break-inside: avoid; }
figure.chart figcaption { margin-bottom: .5rem; }
.chart-title { display: block; font-weight: 700; font-size: 1.05rem; }
.chart-meta { color: var(--muted); font-size: .85rem; }
figure.chart svg { display: block; width: 100%; height: auto; }
figure.chart svg text { font-family: var(--sans); }
.chart-error { color: var(--bad); }
table.stats { width: 100%; margin-top: .5rem; font-size: .85rem;
  font-variant-numeric: tabular-nums; }
table.stats th, table.stats td { padding: .3rem .5rem; border-bottom: 1px solid var(--line);
  text-align: right; }
table.stats th:first-child { text-align: left; white-space: nowrap; }
table.stats thead th { color: var(--muted); font-weight: 600; }
table.stats tbody th { font-weight: 600; }
table.stats td.missing { text-align: left; color: var(--muted); font-style: italic; }
ul.literature { margin: .75rem 0 0; padding: 0; list-style: none; font-size: .85rem; }
ul.literature li { margin: .35rem 0; padding-left: .6rem;
  border-left: 3px solid var(--literature); }
ul.literature cite { display: block; color: var(--muted); }
.lit-tag { display: inline-block; padding: 0 .4rem; border-radius: 4px;
  background: #fdf2e3; color: var(--literature); font-size: .72rem; font-weight: 700;
  text-transform: uppercase; letter-spacing: .04em; }

dl.facts { display: grid; grid-template-columns: repeat(auto-fill, minmax(min(100%, 360px), 1fr));
  gap: 0 2rem; margin: 0; }
dl.facts div { display: grid; grid-template-columns: minmax(8rem, 40%) 1fr; gap: .75rem;
  padding: .35rem 0; border-bottom: 1px solid var(--line); }
dl.facts dt { color: var(--muted); }
dl.doctor { grid-template-columns: 1fr; }
dl.doctor div { grid-template-columns: minmax(10rem, 19rem) 1fr; }
dl.doctor dt { font-family: var(--mono); font-size: .8rem; padding-top: .15rem;
  overflow-wrap: anywhere; }
dl.facts dd { margin: 0; overflow-wrap: anywhere; }
.yes { color: var(--good); }
.no { color: var(--bad); }
.chip { display: inline-block; margin: 0 .25rem .2rem 0; padding: 0 .4rem; border-radius: 4px;
  font-size: .8rem; }
.chip.yes { background: var(--good-bg); }
.chip.no { background: var(--bad-bg); }
.jkey { font-family: var(--mono); font-size: .85em; }

footer { margin-top: 3rem; color: var(--muted); font-size: .85rem; }
@media print {
  html, body { background: #fff; }
  .charts { grid-template-columns: 1fr 1fr; }
}
"#;
