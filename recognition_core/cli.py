"""``crosspark recognize``: read the plates in photos (or in cut-out plates with ``--crop``)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click


def _font_path() -> str | None:
    """A font that has the province characters, for ``--draw`` (None: draw ASCII only)."""
    for candidate in (
        "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
        "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
        "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    ):
        if Path(candidate).is_file():
            return candidate
    return None


def draw(image: Any, plates: list[dict[str, Any]], out: Path) -> None:
    """Save ``image`` with each plate's box and reading drawn on it."""
    import cv2
    import numpy as np
    from PIL import Image, ImageDraw, ImageFont

    canvas = image.copy()
    thick = max(2, round(canvas.shape[1] / 400))
    for p in plates:
        x, y, w, h = p["box"]
        cv2.rectangle(canvas, (x, y), (x + w, y + h), (0, 0, 255), thick)
    font_file = _font_path()
    size = max(14, round(canvas.shape[1] / 40))
    pil = Image.fromarray(cv2.cvtColor(canvas, cv2.COLOR_BGR2RGB))
    pen = ImageDraw.Draw(pil)
    font = ImageFont.truetype(font_file, size) if font_file else ImageFont.load_default()
    for p in plates:
        x, y, _, _ = p["box"]
        text = f"{p['plate']} {p['color']} {p['confidence']:.2f}"
        if font_file is None:
            text = text.encode("ascii", "replace").decode()
        ty = max(0, y - size - 4)
        left, top, right, bottom = pen.textbbox((x, ty), text, font=font)
        pen.rectangle((left - 2, top - 2, right + 2, bottom + 2), fill=(0, 0, 0))
        pen.text((x, ty), text, fill=(255, 255, 0), font=font)
    out.parent.mkdir(parents=True, exist_ok=True)
    annotated = cv2.cvtColor(np.asarray(pil), cv2.COLOR_RGB2BGR)
    if not cv2.imwrite(str(out), annotated):
        raise click.ClickException(f"cannot write {out}")


@click.command("recognize")
@click.argument("images", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--crop", is_flag=True, help="Each image is an already cut-out plate.")
@click.option("--json", "as_json", is_flag=True, help="One JSON line per image.")
@click.option(
    "--draw",
    "draw_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Save each image with its plates drawn on it into this folder (same file name, .jpg).",
)
@click.option(
    "--min-confidence",
    type=click.FloatRange(0.0, 1.0),
    default=None,
    help="Drop reads below this confidence (default: the recogniser's own threshold).",
)
def recognize(
    images: tuple[Path, ...], crop: bool, as_json: bool, draw_dir: Path | None, min_confidence: float | None
) -> None:
    """Read the licence plates in IMAGE… (JPEG, PNG, BMP, …; up to 8000×8000 pixels).

    With --json, one line per image: {"file", "ms", "plates": [{"plate", "color", "confidence",
    "box": [x, y, w, h]}]}; "ms" is the recognition time (decoding excluded). An image that cannot
    be read gets "plates": [] and an "error"; the exit status is then 1.
    """
    from recognition_core import pipeline
    from recognition_core.classify import load_classifier
    from recognition_core.reader import load_reader

    try:
        load_classifier()  # once, before the clock starts on the first image
        load_reader()
    except FileNotFoundError as exc:
        raise click.ClickException(str(exc)) from None
    threshold = min_confidence
    if threshold is None:
        threshold = pipeline.CROP_MIN_CONFIDENCE if crop else pipeline.MIN_CONFIDENCE
    failed = 0
    for path in images:
        record: dict[str, Any] = {"file": str(path), "ms": 0.0, "plates": []}
        image = None
        try:
            image = pipeline.read_image(path)
            start = time.perf_counter()
            if crop:
                one = pipeline.recognize_crop(image, threshold)
                found = [one] if one is not None else []
            else:
                found = pipeline.recognize(image, threshold)
            record["ms"] = round((time.perf_counter() - start) * 1000, 2)
            record["plates"] = [
                {
                    "plate": r.identity.plate,
                    "color": r.identity.color.value,
                    "confidence": r.identity.confidence,
                    "box": list(r.box),
                }
                for r in found
            ]
        except pipeline.ImageRefused as exc:
            failed += 1
            record["error"] = str(exc)
        if as_json:
            sys.stdout.write(json.dumps(record, ensure_ascii=False) + "\n")
            sys.stdout.flush()
        else:
            _print_human(record)
        if draw_dir is not None and image is not None:
            draw(image, record["plates"], draw_dir / (path.stem + ".jpg"))
    if failed:
        sys.exit(1)


def _print_human(record: dict[str, Any]) -> None:
    if "error" in record:
        click.echo(f"{record['file']}: error: {record['error']}", err=False)
        return
    if not record["plates"]:
        click.echo(f"{record['file']}: no plate ({record['ms']:.1f} ms)")
        return
    click.echo(f"{record['file']}: {len(record['plates'])} plate(s) in {record['ms']:.1f} ms")
    for p in record["plates"]:
        x, y, w, h = p["box"]
        click.echo(f"  {p['plate']}  {p['color']:<12} confidence {p['confidence']:.2f}  box {x},{y} {w}×{h}")
