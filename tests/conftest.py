import pytest
import torch

from minitml.config import get_config


@pytest.fixture(scope="session")
def tiny():
    return get_config("tiny")


@pytest.fixture(scope="session")
def speech():
    """A few seconds of eSpeak NG speech at 16 kHz (the project's own data)."""
    from minitml.world.espeak import synthesize

    return synthesize("Tell me when the light turns green, and then count to five.")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _threads():
    """The CLI sets one torch thread for its process; tests call it in-process: restore."""
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)
