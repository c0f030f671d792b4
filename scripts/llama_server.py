"""llama-server-compatible launcher built on the `xllamacpp` Python API.

`xllamacpp` embeds llama.cpp's own HTTP server (same endpoints and JSON as
`llama-server`) but has no command-line entry point; this file gives it the
subset of llama-server's command line that `ra-serve --engine llama-cpp`
passes, so ra-serve cannot tell the two apart:

    llama-server -m MODEL.gguf [--host H] [--port P] [-c N] [-np N] [-t N]
                 [-tb N] [--poll N] [--alias NAME] [-n N] [--metrics] [--no-webui]
                 [-lv N] [--chat-template-file F]
                 [--reasoning-format none|auto|deepseek|deepseek-legacy]

The API key comes only from the environment variable LLAMA_API_KEY (as for
llama-server; comma-separated for several keys), never from argv, because
`ps` shows argv to every user. Unknown flags are kept out and reported with a
warning. Logs go to stderr. The process stays in the foreground until SIGTERM,
SIGINT or SIGHUP, then exits promptly; it also dies with its parent.

Run through the `llama-server` sh wrapper next to this file, which picks the
venv interpreter.
"""

import argparse
import ctypes
import os
import signal
import sys
import threading

PROG = "llama-server"
# How long a requested shutdown may take before the process exits anyway
# (the server's destructor waits for its loop; a stuck request must not
# keep ra-serve's grace period busy).
SHUTDOWN_DEADLINE_S = 5.0
PR_SET_PDEATHSIG = 1
REASONING_FORMATS = {
    "none": "COMMON_REASONING_FORMAT_NONE",
    "auto": "COMMON_REASONING_FORMAT_AUTO",
    "deepseek": "COMMON_REASONING_FORMAT_DEEPSEEK",
    "deepseek-legacy": "COMMON_REASONING_FORMAT_DEEPSEEK_LEGACY",
}


def log(msg):
    print(f"{PROG}: {msg}", file=sys.stderr, flush=True)


def die_with_parent():
    """Arm SIGKILL on parent death, then check the parent is still ours."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            log(f"warning: prctl(PR_SET_PDEATHSIG) failed: errno {ctypes.get_errno()}")
    except (OSError, AttributeError) as e:  # not Linux
        log(f"warning: cannot set parent-death signal: {e}")
        return
    # The parent may have died between fork and prctl: then we were already
    # reparented and the signal will never come.
    expected = os.environ.pop("_RA_LAUNCHER_PPID", None)
    if expected is not None and expected.isdigit() and os.getppid() != int(expected):
        log("parent exited before start-up; exiting")
        sys.exit(1)


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog=PROG,
        allow_abbrev=False,  # llama-server does not accept abbreviations
        description="llama.cpp server (xllamacpp) with llama-server's flags. "
        "API key: environment variable LLAMA_API_KEY.",
    )
    p.add_argument("-m", "--model", required=True, help="path to a .gguf file")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("-c", "--ctx-size", type=int, default=0,
                   help="total context, shared by the slots (0 = the model's)")
    p.add_argument("-np", "--parallel", type=int, default=1, help="number of slots")
    p.add_argument("-t", "--threads", type=int, default=-1)
    p.add_argument("-tb", "--threads-batch", type=int, default=None,
                   help="threads for prompt processing (default: --threads)")
    p.add_argument("--poll", type=int, default=None,
                   help="0-100: how much worker threads busy-wait for work "
                   "(llama.cpp default 50); 0 yields the CPU, kinder to a shared machine")
    p.add_argument("-a", "--alias", default=None, help="served model name")
    p.add_argument("-n", "--n-predict", type=int, default=-1,
                   help="default max tokens per request (-1 = unbounded)")
    p.add_argument("--metrics", action="store_true", help="enable /metrics")
    p.add_argument("--no-webui", action="store_true")
    p.add_argument("-lv", "--verbosity", type=int, default=None)
    p.add_argument("--chat-template-file", default=None,
                   help="Jinja chat template to use instead of the GGUF's")
    p.add_argument("--reasoning-format", choices=sorted(REASONING_FORMATS), default=None,
                   help="where <think> text goes: 'deepseek' (llama.cpp's default) "
                   "moves it to message.reasoning_content when the chat template "
                   "supports thinking, 'none' leaves it in message.content")
    p.add_argument("--api-key", dest="api_key_argv", default=None, help=argparse.SUPPRESS)
    args, unknown = p.parse_known_args(argv)
    if args.api_key_argv is not None:
        # Refuse rather than accept: a key on argv is visible to `ps`.
        p.error("--api-key is not accepted on the command line; "
                "set the environment variable LLAMA_API_KEY instead")
    if unknown:
        log(f"warning: ignoring unsupported arguments: {' '.join(unknown)}")
    return args


def build_params(xllamacpp, args):
    params = xllamacpp.CommonParams()
    params.model.path = args.model
    params.hostnames = [args.host]
    params.port = args.port
    params.n_ctx = args.ctx_size
    params.n_parallel = args.parallel
    params.n_predict = args.n_predict
    params.cpuparams.n_threads = args.threads
    params.cpuparams_batch.n_threads = (
        args.threads if args.threads_batch is None else args.threads_batch
    )
    if args.poll is not None:
        params.cpuparams.poll = args.poll
        params.cpuparams_batch.poll = args.poll
    if args.alias:
        params.model_alias = {args.alias}
    params.endpoint_metrics = args.metrics
    if args.no_webui:
        params.ui = False
    if args.verbosity is not None:
        params.verbosity = args.verbosity
    if args.chat_template_file is not None:
        with open(args.chat_template_file, encoding="utf-8") as f:
            params.chat_template = f.read()
    if args.reasoning_format is not None:
        params.reasoning_format = getattr(
            xllamacpp.common_reasoning_format, REASONING_FORMATS[args.reasoning_format]
        )
    keys = [k.strip() for k in os.environ.get("LLAMA_API_KEY", "").split(",") if k.strip()]
    if keys:
        params.api_keys = keys
    # Nothing we start needs it (the initial /proc/<pid>/environ keeps it
    # regardless; that file is readable only by the same user).
    os.environ.pop("LLAMA_API_KEY", None)
    return params, bool(keys)


def main(argv):
    args = parse_args(argv)
    die_with_parent()

    # While the model loads, Python-level handlers could not run (the load is
    # one blocking native call): let SIGTERM/SIGINT kill us outright, which is
    # safe because nothing is serving yet.
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)

    if not os.path.isfile(args.model):
        log(f"error: model file not found: {args.model}")
        return 1

    import xllamacpp  # after the checks: importing loads the native library

    params, has_key = build_params(xllamacpp, args)
    log(
        f"xllamacpp {xllamacpp.__version__}: model={args.model} host={args.host} "
        f"port={args.port} ctx={args.ctx_size} parallel={args.parallel} "
        f"threads={args.threads} alias={args.alias or '-'} "
        f"api_key={'set' if has_key else 'none'}"
    )

    stop = threading.Event()

    def on_signal(signum, _frame):
        if stop.is_set():
            os._exit(128 + signum)  # second signal: no more waiting
        log(f"received {signal.Signals(signum).name}, shutting down")
        stop.set()

    try:
        server = xllamacpp.Server(params)
    except RuntimeError as e:
        # llama.cpp has already logged the cause (bad model, port in use...).
        log(f"error: server failed to start: {e}")
        return 1

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    log(f"ready: listening on {server.listening_address}")

    # Event.wait with a timeout keeps the main thread returning to the
    # interpreter, so signal handlers run promptly.
    while not stop.wait(1.0):
        pass

    watchdog = threading.Timer(SHUTDOWN_DEADLINE_S, lambda: os._exit(0))
    watchdog.daemon = True
    watchdog.start()
    del server  # stops the HTTP server and the inference loop
    log("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
