"""`DuplexDemo`: talk to the model inside the notebook.

    from minitml.demo import DuplexDemo
    demo = DuplexDemo()      # loads data/tiny.pt (on the GPU when there is one)
    demo                     # the widget: pick a mode, press start

The widget is an anywidget: a Python object (this file) with a front end in
widget.js, talking over the notebook's comm channel. The kernel never runs a
loop of its own: the browser's audio clock sends a chunk every 200 ms, and each
chunk runs one `Session.step` inside the message handler, whose reply (the
model's next 200 ms) goes straight back. A cell that looped and slept instead
would keep the kernel busy, and a busy kernel does not process widget messages.

What it needs from the browser: the microphone (and the webcam, if ticked) are
only offered to pages in a *secure context*: https, or http on localhost /
127.0.0.1. JupyterLab on your own machine, Colab and Binder all qualify; a lab
opened by its IP address over plain http does not (use scripted mode there, or an
SSH tunnel to localhost). The browser asks for permission on the first start.
"""

from __future__ import annotations

from pathlib import Path

import anywidget
import traitlets

from minitml.config import AudioConfig
from minitml.demo.engine import DemoEngine, load_demo_model
from minitml.world.scenarios import KINDS

HERE = Path(__file__).resolve().parent
AUDIO = AudioConfig()  # the defaults below; a model's own config replaces them in __init__


class DuplexDemo(anywidget.AnyWidget):
    _esm = HERE / "widget.js"
    _css = HERE / "widget.css"

    # what the front end needs to know (synced once, when it renders)
    kinds = traitlets.List(traitlets.Unicode()).tag(sync=True)  # scenario kinds for scripted mode
    kind = traitlets.Unicode("interruption").tag(sync=True)  # the scenario kind chosen first
    sample_rate = traitlets.Int(AUDIO.sample_rate).tag(sync=True)  # Hz of the chunks
    chunk_samples = traitlets.Int(AUDIO.samples_per_micro_turn).tag(sync=True)  # samples per chunk
    micro_turn_ms = traitlets.Int(AUDIO.micro_turn_ms).tag(sync=True)  # one chunk's length
    frame_size = traitlets.List(traitlets.Int(), [80, 80]).tag(sync=True)  # (H, W) of a webcam frame
    device = traitlets.Unicode("").tag(sync=True)  # where the model runs: "cpu" or "cuda:0"
    checkpoint = traitlets.Unicode("").tag(sync=True)  # the file the weights came from
    turns = traitlets.Int(0).tag(sync=True)  # micro-turns the kernel has stepped in this conversation

    def __init__(self, model=None, *, checkpoint=None, device: str | None = None, background="tools",
                 overrun: str = "catch_up", **kwargs):
        """model: an InteractionModel (default: `load_demo_model(checkpoint, device)`);
        background: "tools" (a ToolExecutor answers the model's <call>s in microphone mode),
        a BackgroundModel, or None."""
        if model is None:
            model = load_demo_model(checkpoint, device)
        if background == "tools":
            from minitml.world.tools import ToolExecutor

            background = ToolExecutor(latency_s=0.5)
        self.engine = DemoEngine(model, background=background, overrun=overrun)
        cfg = model.cfg
        super().__init__(kinds=list(KINDS), sample_rate=cfg.audio.sample_rate,
                         chunk_samples=cfg.audio.samples_per_micro_turn,
                         micro_turn_ms=cfg.audio.micro_turn_ms,
                         frame_size=[cfg.vision.frame_height, cfg.vision.frame_width],
                         device=self.engine.device, checkpoint=Path(self.engine.checkpoint).name, **kwargs)
        self.on_msg(self._on_message)

    def _on_message(self, _widget, content, buffers):
        try:
            replies = self.engine.handle(content, buffers)
        except Exception as err:  # a bug must not kill the demo: say it, keep the session
            replies = [({"type": "error", "seq": content.get("seq"),
                         "message": f"{type(err).__name__}: {err}"}, [])]
        for reply, bufs in replies:
            self.send(reply, bufs)
        self.turns = self.engine.turn

    def timeline(self):
        """The conversation so far as a `Timeline` (plot it with `.plot()`, hear it with `.stereo()`)."""
        return self.engine.timeline()

    def close(self):
        self.engine.close()
        super().close()
