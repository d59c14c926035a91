"""The `neuroserve` command: talk to a server from a terminal (rich tables) or a script (--json).

    neuroserve predict image examples/cat.png examples/ship.png --top-k 3
    neuroserve predict tumor examples/scan-tumor.png
    neuroserve predict detect examples/road-signs.jpg --save boxes.png
    neuroserve sentiment "what a great film" --explain
    neuroserve fraud examples/transactions.json --threshold 0.5
    neuroserve deterioration examples/icu_stay.json
    neuroserve translate "good morning"
    neuroserve chat
    neuroserve models
    neuroserve health
    neuroserve serve --port 8000          (needs the server extra)

Only the standard library is imported at the top: `serve` hands over to service.cli before httpx or
rich are needed, so a server-only install runs it, and a client-only install runs the rest.
Exit status: 0 ok, 2 a client-side error (bad request, key, unknown model, unreadable input),
1 a server or connection error (or, for `health`, a server that is not ready).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from typing import Any, Callable

SERVER_EXTRA_HINT = "`neuroserve serve` needs the server extra: pip install 'neuroserve[serve]'"


def _serve(argv: list[str]) -> int:
    try:
        from service import cli as server_cli

        return server_cli.main(argv)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] == "client":
            raise
        print(f"{SERVER_EXTRA_HINT} (missing module {exc.name!r})", file=sys.stderr)
        return 2


def _common(parser: argparse.ArgumentParser, default: Any) -> None:
    """The connection and output options, accepted before or after the subcommand."""
    parser.add_argument("--url", default=default, help="server URL (default $NEUROSERVE_URL or http://127.0.0.1:8000)")
    parser.add_argument("--api-key", default=default, help="API key sent as a Bearer token (default $NEUROSERVE_API_KEY)")
    parser.add_argument("--timeout", type=float, default=default, help="seconds to wait for an answer (default 60)")
    parser.add_argument("--json", action="store_true", default=default, help="print the raw JSON answer, for scripts")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="neuroserve", description="Neuroserve command line: query a model server, or serve one")
    _common(parser, None)
    shared = argparse.ArgumentParser(add_help=False)
    _common(shared, argparse.SUPPRESS)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    commands.add_parser("serve", help="start the HTTP server (needs the server extra; see `neuroserve serve --help`)")

    predict = commands.add_parser("predict", help="image models").add_subparsers(dest="task", required=True, metavar="TASK")
    image = predict.add_parser("image", parents=[shared], help="classify images")
    image.add_argument("images", nargs="+", help="PNG, JPEG or WebP files")
    image.add_argument("--top-k", type=int, default=3, help="labels to show per image (1-10, default 3)")
    image.add_argument("--model", help="model name or name:version")
    image.set_defaults(handler=_predict_image)
    tumor = predict.add_parser("tumor", parents=[shared], help="detect brain tumors in MRI slices")
    tumor.add_argument("images", nargs="+", help="PNG, JPEG or WebP files")
    tumor.add_argument("--model", help="model name or name:version")
    tumor.set_defaults(handler=_predict_tumor)
    detect = predict.add_parser("detect", parents=[shared], help="detect road signs: boxes, labels, scores")
    detect.add_argument("images", nargs="+", help="PNG, JPEG or WebP files (at most 1,024 px on the longer side)")
    detect.add_argument("--score-threshold", type=float, help="keep boxes scoring at least this (0-1; the model's own "
                                                              "by default)")
    detect.add_argument("--max-detections", type=int, help="at most this many boxes per picture (1-300)")
    detect.add_argument("--save", metavar="PNG", help="write the picture with its boxes drawn (needs Pillow); with "
                                                      "several pictures, PNG is a folder for <n>-<name>.detect.png")
    detect.add_argument("--model", help="model name or name:version")
    detect.set_defaults(handler=_predict_detect)
    for command in (image, tumor):
        command.add_argument("--explain-to", metavar="DIR", help="explain each answer: write DIR/<image>.explain.png "
                                                                "(the relevance over the image; at most 8 images)")

    sentiment = commands.add_parser("sentiment", parents=[shared], help="sentiment of texts")
    sentiment.add_argument("texts", nargs="+")
    sentiment.add_argument("--model", help="model name or name:version")
    sentiment.add_argument("--explain", action="store_true", help="show the words that weighed most (at most 8 texts)")
    sentiment.set_defaults(handler=_sentiment)

    fraud = commands.add_parser("fraud", parents=[shared], help="fraud probability of card transactions")
    fraud.add_argument("file", help="CSV with the ULB header (Time, V1..V28, Amount; a Class column is ignored) or JSON "
                                    "(a transaction, a list, or {\"transactions\": [...]}); - reads standard input")
    deterioration = commands.add_parser("deterioration", parents=[shared],
                                        help="ICU in-hospital mortality risk (research demo, not a medical device)")
    deterioration.add_argument("file", help="JSON: a stay, a list of stays or {\"stays\": [...]} (docs/client.md); "
                                            "- reads standard input")
    for command, handler in ((fraud, _fraud), (deterioration, _deterioration)):
        command.add_argument("--threshold", type=float, help="flag at this probability instead of the model's (0-1)")
        command.add_argument("--model", help="model name or name:version")
        command.add_argument("--explain", action="store_true", help="show what weighed most (at most 8 rows)")
        command.set_defaults(handler=handler)

    translate = commands.add_parser("translate", parents=[shared], help="translate texts")
    translate.add_argument("texts", nargs="+")
    translate.add_argument("--source", default="en", help="source language (default en)")
    translate.add_argument("--target", default="de", help="target language (default de)")
    translate.add_argument("--beam-size", type=int, default=None)
    translate.add_argument("--model", help="model name or name:version")
    translate.set_defaults(handler=_translate)

    chat = commands.add_parser("chat", parents=[shared], help="chat with a language model (interactive without a message)")
    chat.add_argument("message", nargs="*", help="send this one message and exit, instead of a conversation")
    chat.add_argument("--model", help="model name")
    chat.add_argument("--system", help="system prompt")
    chat.add_argument("--max-tokens", type=int, default=None)
    chat.add_argument("--temperature", type=float, default=None)
    chat.add_argument("--top-p", type=float, default=None)
    chat.set_defaults(handler=_chat)

    commands.add_parser("models", parents=[shared], help="list the models").set_defaults(handler=_models)
    commands.add_parser("health", parents=[shared], help="liveness and readiness (exit 1 when not ready)").set_defaults(handler=_health)
    return parser


# -- output ---------------------------------------------------------------------------------------------

def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, soft_wrap=False, highlight=False)


def _print_error(kind: str, message: object) -> None:
    from rich.markup import escape

    _console(stderr=True).print(f"[red]{kind}:[/] {escape(str(message))}")


def _print_json(body: Any) -> None:
    print(json.dumps(body, indent=2, ensure_ascii=False))


def _table(title: str, *columns: str):
    from rich.table import Table
    from rich.text import Text

    table = Table(title=Text(title), title_justify="left")
    for column in columns:
        table.add_column(column, overflow="fold", justify="right" if column in ("score", "probability") else "left")
    return table


def _row(table, *cells: Any) -> None:
    """Adds a row; plain strings (server or user text) are shown literally, never read as rich markup."""
    from rich.text import Text

    table.add_row(*(Text(cell) if isinstance(cell, str) else cell for cell in cells))


def _score(value: float) -> str:
    return f"{value:.3f}"


def _show(args: argparse.Namespace, result: Any, render: Callable[[Any], Any]) -> int:
    if args.json:
        _print_json(result.raw)
    else:
        _console().print(render(result))
    return 0


# -- subcommands ----------------------------------------------------------------------------------------

def _write_overlays(args: argparse.Namespace, result: Any) -> list[str]:
    """With --explain-to: each result's overlay PNG written as DIR/<image stem>.explain.png; the paths ('' without)."""
    if not args.explain_to:
        return [""] * len(result.results)
    from pathlib import Path

    folder = Path(args.explain_to)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, (image, row) in enumerate(zip(args.images, result.results)):
        path = folder / f"{index}-{Path(image).stem}.explain.png"
        path.write_bytes(row.explanation.overlay_png)
        paths.append(str(path))
    return paths


def _predict_image(ns, args: argparse.Namespace) -> int:
    def render(result):
        table = _table(f"{result.model} v{result.version}", "image", "label", "score", "top-k",
                       *(["explanation"] if args.explain_to else []))
        for path, row, overlay in zip(args.images, result.results, overlays):
            others = ", ".join(f"{t.label} {_score(t.score)}" for t in row.top_k[1:])
            _row(table, path, row.label, _score(row.score), others, *([overlay] if args.explain_to else []))
        return table

    result = ns.classify_images(args.images, top_k=args.top_k, model=args.model, explain=bool(args.explain_to))
    overlays = _write_overlays(args, result)
    return _show(args, result, render)


def _predict_tumor(ns, args: argparse.Namespace) -> int:
    def render(result):
        table = _table(f"{result.model} v{result.version}", "image", "tumor", "probability", "subtype",
                       *(["explanation"] if args.explain_to else []))
        for path, row, overlay in zip(args.images, result.results, overlays):
            subtype = f"{row.subtype.label} {_score(row.subtype.score)}" if row.subtype else ""
            _row(table, path, "yes" if row.tumor else "no", _score(row.probability), subtype,
                 *([overlay] if args.explain_to else []))
        return table

    result = ns.detect_tumor(args.images, model=args.model, explain=bool(args.explain_to))
    overlays = _write_overlays(args, result)
    return _show(args, result, render)


COLOURS = ("#1f77b4", "#ff7f0e", "#d62728", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf")


def draw_detections(image_path: str, found, colours: dict[str, str], out_path: str) -> None:
    """The picture with each detection's box and "label score" drawn (Pillow) in its label's colour, saved as PNG."""
    from PIL import Image, ImageDraw

    with Image.open(image_path) as source:
        picture = source.convert("RGB")
    draw = ImageDraw.Draw(picture)
    width = max(2, round(max(picture.size) / 250))
    for d in found:
        colour = colours[d.label]
        draw.rectangle(d.box, outline=colour, width=width)
        text = f"{d.label} {d.score:.2f}"
        x0, y0 = d.box[0], max(0, d.box[1] - 12)
        draw.rectangle(draw.textbbox((x0, y0), text), fill=colour)
        draw.text((x0, y0), text, fill="white")
    picture.save(out_path, format="PNG")


def _predict_detect(ns, args: argparse.Namespace) -> int:
    from pathlib import Path

    if args.save and importlib.util.find_spec("PIL") is None:
        print("--save needs Pillow: pip install pillow", file=sys.stderr)
        return 2
    result = ns.detect_objects(args.images, score_threshold=args.score_threshold,
                               max_detections=args.max_detections, model=args.model)
    saved = [""] * len(args.images)
    if args.save:
        labels = sorted({d.label for r in result.results for d in r.detections})
        colours = {label: COLOURS[i % len(COLOURS)] for i, label in enumerate(labels)}  # one per label, every picture
        if len(args.images) == 1:
            saved = [args.save]
        else:
            Path(args.save).mkdir(parents=True, exist_ok=True)
            saved = [str(Path(args.save) / f"{i}-{Path(p).stem}.detect.png") for i, p in enumerate(args.images)]
        for path, row, out in zip(args.images, result.results, saved):
            draw_detections(path, row.detections, colours, out)

    def render(result):
        table = _table(f"{result.model} v{result.version}", "image", "label", "score", "box (x_min, y_min, x_max, y_max)")
        for path, row, out in zip(args.images, result.results, saved):
            name = path + (f" -> {out}" if out else "")
            if not row.detections:
                _row(table, name, "(none)", "", "")
            for i, d in enumerate(row.detections):
                _row(table, name if i == 0 else "", d.label, _score(d.score), ", ".join(f"{v:.1f}" for v in d.box))
        return table

    return _show(args, result, render)


def _sentiment(ns, args: argparse.Namespace) -> int:
    def render(result):
        table = _table(f"{result.model} v{result.version}", "text", "label", "score",
                       *(["words that weighed most"] if args.explain else []))
        for text, row in zip(args.texts, result.results):
            why = [_weighed_most(zip(row.explanation.tokens, row.explanation.weights))] if row.explanation else []
            _row(table, text, row.label, _score(row.score), *why)
        return table

    return _show(args, ns.sentiment(args.texts, model=args.model, explain=args.explain), render)


def _read_rows(path: str, key: str) -> list[dict]:
    """Rows from a JSON file (one object, a list, or {key: [...]}) or, for transactions, a CSV with a header."""
    text = sys.stdin.read() if path == "-" else open(path, encoding="utf-8").read()
    if text.lstrip()[:1] in ("{", "["):
        data = json.loads(text)
        data = data.get(key, data) if isinstance(data, dict) else data
        return [data] if isinstance(data, dict) else list(data)
    if key != "transactions":
        raise ValueError(f"{path}: expected JSON")
    import csv
    import io

    rows = list(csv.DictReader(io.StringIO(text)))
    return [{name: float(value) for name, value in row.items() if name not in ("Class", "")} for row in rows]


def _weighed_most(pairs, count: int = 3) -> str:
    """'name +0.123, ...': the `count` (name, weight) pairs of largest |weight|."""
    ranked = sorted(pairs, key=lambda pair: -abs(pair[1]))
    return ", ".join(f"{name} {weight:+.3f}" for name, weight in ranked[:count])


def _why(args: argparse.Namespace, row) -> list[str]:
    """With --explain: the cell of the features that weighed most."""
    return [_weighed_most(row.explanation.features)] if args.explain and row.explanation else []


def _fraud(ns, args: argparse.Namespace) -> int:
    def render(result):
        table = _table(f"{result.model} v{result.version}", "#", "fraud", "probability", "threshold",
                       *(["weighed most"] if args.explain else []))
        for index, row in enumerate(result.results):
            _row(table, str(index), "yes" if row.fraud else "no", _score(row.probability), _score(row.threshold),
                 *_why(args, row))
        return table

    rows = _read_rows(args.file, "transactions")
    return _show(args, ns.score_fraud(rows, threshold=args.threshold, model=args.model, explain=args.explain), render)


def _deterioration(ns, args: argparse.Namespace) -> int:
    def render(result):
        table = _table(f"{result.model} v{result.version} (not a medical device)", "#", "risk", "high risk",
                       "hours observed", "ignored", *(["weighed most"] if args.explain else []))
        for index, row in enumerate(result.results):
            ignored = ", ".join(f"{i.parameter} {i.value:g} at minute {i.minute}" for i in row.ignored[:3])
            more = f" (+{len(row.ignored) - 3})" if len(row.ignored) > 3 else ""
            _row(table, str(index), _score(row.risk), "yes" if row.high_risk else "no", str(row.hours_observed),
                 ignored + more, *_why(args, row))
        return table

    rows = _read_rows(args.file, "stays")
    return _show(args, ns.deterioration(rows, threshold=args.threshold, model=args.model, explain=args.explain),
                 render)


def _translate(ns, args: argparse.Namespace) -> int:
    def render(result):
        table = _table(f"{result.model} v{result.version}: {args.source} -> {args.target}", "text", "translation")
        for text, translation in zip(args.texts, result.translations):
            _row(table, text, translation)
        return table

    return _show(args, ns.translate(args.texts, source=args.source, target=args.target, beam_size=args.beam_size,
                                    model=args.model), render)


def _models(ns, args: argparse.Namespace) -> int:
    from rich.text import Text

    def render(result):
        table = _table("models", "id", "task", "versions", "state", "provider", "description")
        for m in result:
            state = Text("ready", "green") if m.ready else Text(m.state, "red") + (f" ({m.reason})" if m.reason else "")
            provider = (m.provider or "").removesuffix("ExecutionProvider")  # CPUExecutionProvider -> CPU
            _row(table, m.id, m.task or "", ", ".join(m.versions), state, provider, m.description)
        return table

    return _show(args, ns.models(), render)


def _health(ns, args: argparse.Namespace) -> int:
    from rich.markup import escape
    from rich.panel import Panel

    def render(health):
        lines = [f"live   {'[green]yes[/]' if health.live else '[red]no[/]'}",
                 f"ready  {'[green]yes[/]' if health.ready else '[red]no[/]'}"]
        if health.loading:
            lines.append(f"loading: {escape(', '.join(health.loading))}")
        lines += [f"[red]failed[/] {escape(name)}: {escape(reason)}" for name, reason in health.failed.items()]
        return Panel("\n".join(lines), title=escape(ns.url), expand=False)

    health = ns.health()
    _show(args, health, render)
    return 0 if health.ready else 1


def _chat(ns, args: argparse.Namespace) -> int:
    options = {"model": args.model, "max_tokens": args.max_tokens, "temperature": args.temperature, "top_p": args.top_p}
    history = [{"role": "system", "content": args.system}] if args.system else []

    def turn(text: str) -> None:
        history.append({"role": "user", "content": text})
        if args.json:
            completion = ns.chat(history, **options)
            _print_json(completion.raw)
            reply = completion.content
        else:
            parts = []
            for delta in ns.chat(history, stream=True, **options):
                parts.append(delta)
                sys.stdout.write(delta)
                sys.stdout.flush()
            sys.stdout.write("\n")
            reply = "".join(parts)
        history.append({"role": "assistant", "content": reply})

    if args.message:
        turn(" ".join(args.message))
        return 0
    from client.errors import NeuroserveError

    if sys.stdin.isatty():
        print("Chatting with the server; /exit or Ctrl-D quits.", file=sys.stderr)
    while True:
        try:
            text = input("you> ")
        except (EOFError, KeyboardInterrupt):
            print()
            return 0
        if text.strip() in ("/exit", "/quit"):
            return 0
        if not text.strip():
            continue
        try:
            turn(text)
        except NeuroserveError as exc:  # keep the conversation; the user may retry or quit
            history.pop()
            _print_error("error", exc)


# -- entry point ----------------------------------------------------------------------------------------

def exit_code(exc: Exception) -> int:
    """2 for errors the caller can fix (4xx, bad input), 1 for server and connection errors."""
    status = getattr(exc, "status", None)
    return 2 if status is not None and 400 <= status < 500 and status != 429 else 1


def make_client(args: argparse.Namespace):
    from client import NeuroserveClient

    timeout = args.timeout if args.timeout is not None else 60.0
    return NeuroserveClient(args.url, api_key=args.api_key, timeout=timeout)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["serve"]:
        return _serve(argv)
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if args.command == "serve":  # `neuroserve --url X serve ...`: the server's parser takes the rest
        return _serve(["serve", *unknown])
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    missing = [name for name in ("httpx", "numpy", "rich") if importlib.util.find_spec(name) is None]
    if missing:  # a server-only install: a message beats a traceback
        print(f"this command needs the client extra: pip install 'neuroserve[client]' (missing {', '.join(missing)})",
              file=sys.stderr)
        return 2
    from client.errors import NeuroserveConnectionError, NeuroserveError

    try:
        with make_client(args) as ns:
            return args.handler(ns, args)
    except NeuroserveError as exc:
        kind = "cannot connect" if isinstance(exc, NeuroserveConnectionError) else "error"
        _print_error(kind, exc)
        return exit_code(exc)
    except (OSError, ValueError, TypeError) as exc:  # unreadable files, bad arrays: the caller's to fix
        _print_error("error", exc)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
