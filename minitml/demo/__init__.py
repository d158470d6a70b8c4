"""The live duplex demo: a notebook widget (microphone or scripted) and a headless run.

    from minitml.demo import DuplexDemo
    DuplexDemo()                         # in a notebook: talk to the model

    python -m minitml demo               # headless: every behaviour, written to out/demo/

engine.py    DemoEngine: the message protocol; one Session.step per 200 ms chunk
widget.py    DuplexDemo: the anywidget (widget.js + widget.css run in the browser)
headless.py  run_headless: the scripted conversation, a stereo wav, a timeline PNG, a report
"""

from minitml.demo.engine import DemoEngine, load_demo_model, pick_device
from minitml.demo.headless import run_headless
from minitml.demo.widget import DuplexDemo

__all__ = ["DemoEngine", "DuplexDemo", "load_demo_model", "pick_device", "run_headless"]
