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


# Real servers (tests/support/servers.py), started in the background as soon as a selected test needs one.
_SERVERS: dict[str, object] = {}
SERVER_FIXTURES = {"postgres", "mlflow_server"}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session, config, items):
    """A test that uses a server fixture is marked ``servers``, before ``-m`` selects."""
    for item in items:
        if SERVER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.servers)


def pytest_collection_finish(session):
    """Servers start for the tests ``-m`` and ``-k`` kept, not for every test collected."""
    from tests.support.servers import MlflowServer, Postgres

    wanted = {name for item in session.items for name in getattr(item, "fixturenames", ())}
    if "postgres" in wanted:
        _SERVERS["postgres"] = Postgres.launch()
    if "mlflow_server" in wanted:
        _SERVERS["mlflow_server"] = MlflowServer.launch()


def pytest_sessionfinish(session, exitstatus):
    for server in _SERVERS.values():
        if server is not None:
            server.stop()


@pytest.fixture(scope="session")
def postgres():
    """A PostgreSQL server on 127.0.0.1; ``postgres.database(name)`` gives the URL of a fresh database."""
    server = _SERVERS.get("postgres")
    if server is None:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql; .ci/run does)")
    server.wait()
    return server


@pytest.fixture(scope="session")
def mlflow_server():
    """An ``mlflow server`` on 127.0.0.1 with its own store; ``.uri`` is its tracking URI."""
    server = _SERVERS["mlflow_server"]
    server.wait()
    return server
