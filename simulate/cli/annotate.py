"""`simulate annotate`: label a run in the browser (the app lives in simulate/annotate/)."""

from __future__ import annotations

import sys
import webbrowser

import click

from simulate.cli import serve
from simulate.cli.options import setting
from simulate.errors import ConfigError
from simulate.store import RunFolder


@click.command("annotate")
@click.argument("run_dir", type=click.Path())
@click.option(
    "--rubric",
    "rubrics",
    multiple=True,
    required=True,
    metavar="FILE_OR_NAME",
    help="Rubric file, or a shipped one (support, faithfulness, ...); repeatable.",
)
@click.option("--annotator", required=True, metavar="NAME", help="Who labels (human:NAME).")
@click.option("--blind", is_flag=True, help="Hide judge and rule suggestions until you answer.")
@setting("--overlap", 1, click.IntRange(1), "People each episode goes to (for agreement).")
@click.option(
    "--adjudicate",
    is_flag=True,
    help="Decide units people answered differently; the decision outranks them.",
)
@setting("--host", "127.0.0.1", None, "Address to listen on.")
@setting("--port", 8765, click.IntRange(0, 65535), "Port (0: any free one).")
@click.option("--no-browser", is_flag=True, help="Print the address; do not open a browser.")
def annotate_command(
    run_dir: str,
    rubrics: tuple[str, ...],
    annotator: str,
    blind: bool,
    overlap: int,
    adjudicate: bool,
    host: str,
    port: int,
    no_browser: bool,
) -> None:
    """Label a run in the browser: a local app with a queue, the rubric as a form, shortcuts."""
    try:
        import uvicorn

        from simulate.annotate.server import AnnotateApp, Settings, open_socket
    except ImportError as exc:
        raise ConfigError(
            f"simulate annotate needs the annotate extra ({exc.name} is missing): "
            "pip install 'simulate[annotate]'"
        ) from None
    settings = Settings(
        run_dir=run_dir,
        rubrics=rubrics,
        annotator=annotator,
        blind=blind,
        overlap=overlap,
        adjudicate=adjudicate,
        host=host,
        port=port,
    )
    app = AnnotateApp(settings)
    sock = open_socket(host, port)
    settings.port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app.asgi(), log_level="warning", access_log=False, lifespan="off")
    )
    url = app.url()
    mode = "adjudicating as" if adjudicate else "labeling as"
    click.echo(f"serving on {url}   ({mode} {settings.labeler}; Ctrl-C stops)")
    sys.stdout.flush()
    if not no_browser:
        webbrowser.open(url)
    role = "annotate-" + settings.labeler.replace(":", "-")
    try:
        with RunFolder(run_dir).lock(role, f"simulate annotate ({settings.labeler})"):
            # Ctrl-C is how the app stops (uvicorn raises it again once it has shut down)
            serve(server.serve(sockets=[sock]))
    finally:
        merged = app.compact()
        sock.close()
    kept = f", merged into {merged.name}" if merged else ""
    click.echo(f"stopped: {app.saved} answers saved in {run_dir}/labels{kept}")
