#!/usr/bin/env python
"""One static HTML page of a run's intermediate sets, opened from disk (no server, no external resources):

  source frames beside their translation in every round, and their labels     (--translated)
  target train frames with each SSL step's pseudo-label over them, ignored hatched   (--pseudo)
  val images, their labels and every model's prediction                       (--predictions)
  with several seeds, their summary: mean and std per model, the checks, a plot (--seed-summary and after)

A sample of frames, evenly spaced so every round shows the same ones; thumbnails link to full-size PNGs.

  python stages/viewer.py --translated round1=results/demo/round1/translated.h5 \\
      --pseudo round1_ssl1=results/demo/round1/ssl1/pseudo.h5 --predictions m0=results/demo/m0/predictions \\
      --source-format gta5 --source-root results/demo/data/source \\
      --target-format cityscapes --target-root results/demo/data/target --out results/demo/viewer
"""

import argparse
import contextlib
import os
import re
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bdl import BDLError  # noqa: E402
from bdl.cli import add_dataset_args, dataset_spec, name_path_pairs, positive_int, run, steps  # noqa: E402
from bdl.defaults import default  # noqa: E402

# Plain inline CSS and JavaScript, nothing fetched: the page works from file:// and inside the snakemake report.
# Thumbnails carry data-src and get a src only when their page is shown, so a page loads what it shows.
# The head script records failed images and script errors on <html data-errors> and counts loaded images
# (data-loaded), for a test or a person to read without a console.
PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{title}}</title>
<script>
var root = document.documentElement, loaded = 0;
root.dataset.errors = ""; root.dataset.loaded = "0";
window.addEventListener("error", function (e) {
  var t = e.target, what = t && t.tagName === "IMG" ? "image " + t.getAttribute("src") : "script: " + e.message;
  root.dataset.errors += (root.dataset.errors ? " | " : "") + what;
}, true);
document.addEventListener("load", function (e) {
  if (e.target.tagName === "IMG") root.dataset.loaded = String(++loaded);
}, true);
</script>
<style>
body { font: 14px system-ui, sans-serif; margin: 1em; color: #222; }
.legend span { display: inline-block; margin: 0 1em 4px 0; white-space: nowrap; }
.legend i, .legend img { display: inline-block; width: 28px; height: 14px; vertical-align: middle; margin-right: 4px; }
.wrap { overflow-x: auto; }
table { border-collapse: collapse; }
th, td { padding: 2px 3px; text-align: left; vertical-align: top; font-weight: normal; }
thead th { font-weight: bold; font-size: 12px; }
th.name { font: 11px monospace; max-width: 9em; overflow-wrap: anywhere; }
td img { display: block; background: #eee; }
td small { color: #555; }
nav { margin: 4px 0; }
</style></head>
<body>
<h1>{{title}}</h1>
<p>{{contents}}. Thumbnails link to the full-size pictures.</p>
<noscript><p>Thumbnails appear with JavaScript on; each cell still links to its full-size PNG.</p></noscript>
<p class="legend">{{legend}}</p>
{{sections}}
<script>
document.querySelectorAll("section").forEach(function (sec) {
  var rows = sec.querySelectorAll("tbody tr"), page = 0;
  var per = location.hash === "#all" ? Math.max(rows.length, 1) : Number(sec.dataset.perPage);
  function show() {
    var pages = Math.max(1, Math.ceil(rows.length / per));
    page = (page + pages) % pages;
    rows.forEach(function (tr, i) {
      tr.hidden = Math.floor(i / per) !== page;
      if (!tr.hidden) tr.querySelectorAll("img[data-src]:not([src])").forEach(function (img) {
        img.src = img.dataset.src;
      });
    });
    sec.querySelector(".page").textContent = "page " + (page + 1) + " of " + pages + " (" + rows.length + " rows)";
  }
  sec.querySelector(".prev").onclick = function () { page -= 1; show(); };
  sec.querySelector(".next").onclick = function () { page += 1; show(); };
  sec.querySelector(".all").onclick = function () { per = Math.max(rows.length, 1); page = 0; show(); };
  show();
});
</script>
</body></html>
"""


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--translated", nargs="+", metavar="NAME=H5",
                   help="translated sets, one per round, or samples of them (stages/sample_set.py)")
    p.add_argument("--pseudo", nargs="+", metavar="NAME=H5", help="pseudo-label sets, one per SSL step")
    p.add_argument("--predictions", nargs="+", metavar="NAME=DIR",
                   help="evaluate.py's prediction folders, one per model (their <name>_pred.png)")
    p.add_argument("--seed-summary", help="seed_summary.py's table (.tsv), shown above the sets")
    p.add_argument("--seed-checks", help="seed_summary.py's checks (.json): the gap closed, the losing steps")
    p.add_argument("--seed-plot", help="seed_summary.py's plot (.png)")
    add_dataset_args(p, "source", "the translated sets' frames")
    add_dataset_args(p, "target", "the pseudo-labelled train frames; --val-split for the predictions")
    p.add_argument("--val-split", default=default("target.val_split"), help="split the predictions are of")
    p.add_argument("--sample", type=steps, default=default("viewer.sample"),
                   help="frames shown per section, evenly spaced over the set")
    p.add_argument("--thumb-width", type=steps, default=default("viewer.thumb_width"), help="thumbnail width (px)")
    p.add_argument("--per-page", type=positive_int, default=default("viewer.per_page"),
                   help="rows per page (0: all on one page)")
    p.add_argument("--out", required=True, help="folder for index.html and its PNGs (replaced whole)")
    return p


@contextlib.contextmanager
def staged_folder(out: Path):
    """A hidden sibling to fill, swapped in for ``out`` at the end: a killed job leaves the previous viewer
    or none, never a page whose images are half written."""
    tmp, old = (out.with_name(f".{out.name}.{tag}{os.getpid()}") for tag in ("tmp", "old"))
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        if out.exists():
            os.replace(out, old)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


class Tiles:
    """Writes a cell's full-size PNG and its thumbnail; the thumbnail is drawn at its own size (image
    resized smoothly, labels nearest), so hatching and overlays stay crisp instead of being blurred down."""

    def __init__(self, folder: Path, thumb_width: int):
        self.folder, self.width, self.made = folder, thumb_width, {}

    def draw(self, image, label, size=None):
        import numpy as np
        from PIL import Image

        from bdl.viz import label_colours, label_overlay

        if size is not None:
            image = None if image is None else np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR))
            label = None if label is None else np.asarray(Image.fromarray(label).resize(size, Image.NEAREST))
        if label is None:
            return image
        return label_colours(label) if image is None else label_overlay(image, label)

    def cell(self, section: str, row: int, column: str, image=None, label=None, alt="", note="") -> dict:
        from PIL import Image

        h, w = (image if image is not None else label).shape[:2]
        size = (self.width, max(1, round(h * self.width / w)))
        # the row and column number keep names unique whatever the sets are called; the column name, read
        # by whoever follows a link, is cut down to characters that need no escaping in a file name or URL
        col = self.made[section, row] = self.made.get((section, row), -1) + 1  # cells come left to right
        stem = f"{section}/{row:04d}_{col}_{re.sub(r'[^A-Za-z0-9_-]+', '-', column)}"
        full, thumb = f"{stem}.png", f"{stem}_thumb.png"
        (self.folder / full).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(self.draw(image, label)).save(self.folder / full)
        Image.fromarray(self.draw(image, label, size)).save(self.folder / thumb)
        return {"full": full, "thumb": thumb, "size": size, "alt": alt, "note": note}


def open_sets(pairs, want: tuple, what: str, samples, flag: str) -> list:
    """The HDF5 sets of ``pairs`` (name, path), each checked to hold ``want`` and the frames ``samples`` lists:
    (name, path, file, row of frame i). A sample of a set (stages/sample_set.py) holds only some frames."""
    import h5py

    names = [s.name for s in samples]
    out = []
    for name, path in pairs:
        try:
            f = h5py.File(path, "r")
        except OSError:
            raise BDLError(f"{path}: not an HDF5 file ({flag})") from None
        positions = [int(i) for i in f.attrs["indices"]] if "indices" in f.attrs else None
        row = {i: r for r, i in enumerate(positions)} if positions is not None else None
        out.append((name, path, f, (lambda i, row=row: row[i]) if row is not None else (lambda i: i)))
        missing = [k for k in want if k not in f]
        if missing:
            raise BDLError(f"{path}: not a {what} (no '{missing[0]}' array)")
        stored = list(f["names"].asstr()[:])
        expected = names if positions is None else [names[i] for i in positions if i < len(names)]
        if positions is not None and f.attrs.get("total") != len(names):
            raise BDLError(f"{path}: a sample of a set of {f.attrs.get('total')} frames, not of the {len(names)} "
                           "the data flags list; was it made from other data?")
        if stored != expected:
            first = next((i for i, (a, b) in enumerate(zip(stored, expected)) if a != b),
                         min(len(stored), len(expected)))
            raise BDLError(f"{path}: its {len(stored)} frames are not the {len(expected)} the data flags list "
                           f"(first difference at frame {first}); was it made from other data?")
    return out


def translated_section(args, pairs, tiles: Tiles) -> dict:
    from bdl.artifacts import check_set, frames
    from bdl.data.cache import domain_set
    from bdl.data.readers import read_image, resize_pair
    from bdl.viz import sample_indices

    # the sets hold the translations only: the labels are the source's, read as the segmenter reads them
    spec = dataset_spec(args, "source")
    source = domain_set(spec, None, args.source_size, True)
    samples = source.samples
    for _, path in pairs:
        check_set(path, "translated")
    sets = open_sets(pairs, ("images", "names"), "translated set", samples, "--translated")
    rows = []
    for row, i in enumerate(sample_indices(len(samples), args.sample)):
        image, _ = resize_pair(read_image(samples[i].image), None, args.source_size)
        name = samples[i].name
        cells = [tiles.cell("translated", row, "source", image, alt=f"source {name}")]
        cells += [tiles.cell("translated", row, key, frames(f, "images")[at(i)], alt=f"{key} {name}")
                  for key, _, f, at in sets]
        cells.append(tiles.cell("translated", row, "label", label=source.label_at(i), alt=f"label {name}"))
        rows.append((name, cells))
    return {"id": "translated", "title": "Source frames and their translation", "rows": rows, "total": len(samples),
            "columns": ["source", *(f"translated, {key}" for key, *_ in sets), "source label"],
            "text": "The source frame, the same frame translated by each round's F, and the label M trains on."}


def pseudo_section(args, pairs, tiles: Tiles) -> dict:
    import numpy as np

    from bdl.data.readers import read_image, resize_pair
    from bdl.viz import sample_indices

    samples = dataset_spec(args, "target").samples(with_labels=False)
    from bdl.artifacts import check_set

    for _, path in pairs:
        check_set(path, "pseudo")
    sets = open_sets(pairs, ("label", "names"), "pseudo-label set", samples, "--pseudo")
    rows = []
    for row, i in enumerate(sample_indices(len(samples), args.sample)):
        image, _ = resize_pair(read_image(samples[i].image), None, args.target_size)
        name = samples[i].name
        cells = [tiles.cell("pseudo", row, "target", image, alt=f"target {name}")]
        for key, _, f, at in sets:
            label = f["label"][at(i)]
            kept = f"{100 * np.mean(label != 255):.0f}% kept"
            cells.append(tiles.cell("pseudo", row, key, image, label, alt=f"{key} {name}", note=kept))
        rows.append((name, cells))
    return {"id": "pseudo", "title": "Target frames and their pseudo-labels", "rows": rows, "total": len(samples),
            "columns": ["target", *(f"pseudo-labels, {key}" for key, *_ in sets)],
            "text": "Each SSL step's pseudo-labels over the target frame; hatched pixels are ignored (no loss)."}


def prediction_section(args, pairs, tiles: Tiles) -> dict:
    import json

    import numpy as np
    from PIL import Image

    from bdl.data.readers import read_image
    from bdl.viz import read_label_png

    for _, folder in pairs:
        if not any(folder.glob("*_pred.png")) and any(folder.glob("*.png")):
            raise BDLError(f"{folder}: composites only, no <name>_pred.png (made by an older evaluate.py); "
                           "rerun it: snakemake --forcerun evaluate")
    spec = dataset_spec(args, "target", split=args.val_split)
    samples = spec.samples(with_labels=True, split=args.val_split)
    # evaluate saves its first evaluate.num_predictions images; show those that every model has
    shown = [s for s in samples if all((folder / f"{s.name}_pred.png").is_file() for _, folder in pairs)]
    decode, rows = spec.label_decoder(), []
    for row, s in enumerate(shown[:args.sample]):
        gt = decode(s.label)
        image = read_image(s.image)
        if image.shape[:2] != gt.shape:  # scored at the label's resolution: shown there too
            image = np.asarray(Image.fromarray(image).resize(gt.shape[::-1], Image.BILINEAR))
        cells = [tiles.cell("predictions", row, "image", image, alt=f"image {s.name}"),
                 tiles.cell("predictions", row, "label", label=gt, alt=f"label {s.name}")]
        for key, folder in pairs:
            try:
                pred = read_label_png(folder / f"{s.name}_pred.png")
            except ValueError as exc:
                raise BDLError(str(exc)) from None
            cells.append(tiles.cell("predictions", row, key, label=pred, alt=f"{key} {s.name}"))
        rows.append((s.name, cells))
    heads = []
    for key, folder in pairs:
        scores = folder.parent / "eval.json"
        miou = json.loads(scores.read_text()).get("miou") if scores.is_file() else None
        heads.append(key if miou is None else f"{key} ({miou:.1f} mIoU)")
    return {"id": "predictions", "title": "Val images: every model's prediction", "rows": rows,
            "total": len(samples), "columns": ["image", "ground truth", *heads],
            "text": "The images evaluate saved (evaluate.num_predictions), with the label and each model's output."}


def seed_summary_html(args, folder: Path) -> str:
    """The summary over seeds as a table, its checks and its plot (copied beside the page), or ''."""
    import csv
    import html
    import json

    if not args.seed_summary:
        return ""
    with open(args.seed_summary, newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    cols = [c.removesuffix("_mean") for c in (rows[0] if rows else {}) if c.endswith("_mean")]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in ["model", *cols])
    body = "\n".join("<tr>" + f'<th class="name">{html.escape(r["model"])}</th>'
                     + "".join(f"<td>{html.escape(r[c + '_mean'])} &plusmn; {html.escape(r[c + '_std'])}</td>"
                               for c in cols) + "</tr>" for r in rows)
    seeds = rows[0]["seeds"] if rows else "0"
    lines = json.loads(Path(args.seed_checks).read_text())["lines"] if args.seed_checks else []
    checks = nested_items(lines)
    plot = ""
    if args.seed_plot:
        shutil.copyfile(args.seed_plot, folder / "seed_summary.png")
        plot = '<p><img src="seed_summary.png" alt="mIoU per step over the seeds"></p>'
    return (f'<section id="seeds"><h2>The loop over {html.escape(seeds)} seeds</h2>'
            "<p>mIoU on the target val split, mean &plusmn; standard deviation over the seeds; the sets below "
            "are this seed's.</p>"
            f"<div class=\"wrap\"><table><thead><tr>{head}</tr></thead><tbody>\n{body}\n</tbody></table></div>"
            f"<ul>{checks}</ul>{plot}</section>")


def nested_items(lines: list[str]) -> str:
    """The summary's lines as list items; an indented line (a step under its heading line) nested under the
    line before it."""
    import html

    items = []
    for line in lines:
        if line[:1].isspace() and items:
            items[-1][1].append(line.strip())
        else:
            items.append((line, []))
    return "".join(f"<li>{html.escape(head)}"
                   + ("<ul>" + "".join(f"<li>{html.escape(sub)}</li>" for sub in subs) + "</ul>" if subs else "")
                   + "</li>" for head, subs in items)


def main(args):
    import html

    import numpy as np
    from PIL import Image

    from bdl.data.labels import CLASS_NAMES, PALETTE
    from bdl.viz import label_colours

    out = Path(args.out)
    pairs = [name_path_pairs(getattr(args, key) or [], f"--{key}") for key in ("translated", "pseudo", "predictions")]
    if not any(pairs):
        raise BDLError("nothing to show: give --translated, --pseudo or --predictions")
    # every input checked before the data is listed or anything is drawn: a wrong path fails at once
    for flag, group, is_set in zip(("--translated", "--pseudo", "--predictions"), pairs, (True, True, False)):
        for name, path in group:
            if not (path.is_file() if is_set else path.is_dir()):
                raise BDLError(f"{path}: {'set' if is_set else 'predictions folder'} not found ({flag} {name}=...)")
    for flag in ("seed_summary", "seed_checks", "seed_plot"):
        path = getattr(args, flag)
        if path and not Path(path).is_file():
            raise BDLError(f"{path}: not found (--{flag.replace('_', '-')})")
    with staged_folder(out) as folder:
        tiles = Tiles(folder, args.thumb_width)
        sections = [make(args, group, tiles) for make, group in
                    zip((translated_section, pseudo_section, prediction_section), pairs) if group]
        swatch = label_colours(np.full((14, 28), 255, np.uint8))
        Image.fromarray(swatch).save(folder / "ignored.png")
        legend = "".join(f'<span><i style="background:rgb{tuple(map(int, c))}"></i>{html.escape(n)}</span>'
                         for n, c in zip(CLASS_NAMES, PALETTE))
        legend += '<span><img src="ignored.png" alt="">ignored (255): no label</span>'
        seeds = seed_summary_html(args, folder)
        body = "\n".join([seeds] * bool(seeds) + [section_html(s, args.per_page) for s in sections])
        contents = " &middot; ".join(['<a href="#seeds">The loop over the seeds</a>'] * bool(seeds)
                                     + [f'<a href="#{s["id"]}">{html.escape(s["title"])}</a>' for s in sections])
        parts = {"title": html.escape(f"bdl run {out.parent}"), "contents": contents, "legend": legend,
                 "sections": body}
        page = re.sub(r"\{\{(\w+)\}\}", lambda m: parts[m.group(1)], PAGE)  # one pass: no part is read twice
        (folder / "index.html").write_text(page, encoding="utf-8")
    shown = ", ".join(f"{s['id']} {len(s['rows'])} rows" for s in sections)
    print(f"{out / 'index.html'}: {shown}", file=sys.stderr)


def section_html(s: dict, per_page: int) -> str:
    from html import escape
    from urllib.parse import quote

    def cell(c):
        w, h = c["size"]
        note = f'<small>{escape(c["note"])}</small>' if c["note"] else ""
        return (f'<td><a href="{quote(c["full"])}"><img data-src="{quote(c["thumb"])}" width="{w}" height="{h}" '
                f'alt="{escape(c["alt"])}"></a>{note}</td>')

    head = "".join(f"<th>{escape(c)}</th>" for c in ["frame", *s["columns"]])
    rows = "\n".join(f'<tr><th class="name">{escape(name)}</th>{"".join(map(cell, cells))}</tr>'
                     for name, cells in s["rows"])
    count = f"{len(s['rows'])} of {s['total']:,} frames"
    return (f'<section id="{s["id"]}" data-per-page="{per_page or len(s["rows"]) or 1}"><h2>{escape(s["title"])}</h2>'
            f'<p>{escape(s["text"])} {count}.</p>'
            '<nav><button class="prev">&larr; previous</button> <span class="page"></span> '
            '<button class="next">next &rarr;</button> <button class="all">all rows</button></nav>'
            f'<div class="wrap"><table><thead><tr>{head}</tr></thead><tbody>\n{rows}\n</tbody></table></div></section>')


if __name__ == "__main__":
    sys.exit(run(main, get_args_parser()))
