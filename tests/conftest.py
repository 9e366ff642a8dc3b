import pytest
import torch

from prunesearch.models import build_teacher, get_preset


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def small_cfg():
    return get_preset("small")


@pytest.fixture(scope="session")
def small_teacher(small_cfg):
    torch.manual_seed(0)
    return build_teacher(small_cfg).eval()


@pytest.fixture
def crops(small_cfg):
    z = torch.randn(2, 3, small_cfg.template_size, small_cfg.template_size)
    x = torch.randn(2, 3, small_cfg.search_size, small_cfg.search_size)
    return z, x


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op thread: tiny models on a busy 2-core machine run ~100x slower with two."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
