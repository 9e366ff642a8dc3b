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
