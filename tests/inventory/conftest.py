import threading

import pytest
from django.db import connection

from tests import factories as f


@pytest.fixture
def user(db):
    return f.SuperUserFactory()


@pytest.fixture
def pool(db):
    return f.ServerPoolFactory()


@pytest.fixture
def repo(pool):
    return f.RepositoryFactory(server_pools=[pool])


@pytest.fixture
def server(pool):
    return f.ServerFactory(server_pool=pool)


@pytest.fixture
def vm(pool, repo):
    return f.VirtualMachineFactory(server_pool=pool, repository=repo)


def run_concurrently(fn, args_list):
    """Run fn(*args) in one thread each, all released at the same moment; returns
    [(result, exception)] in order. Every thread closes its own DB connection."""
    barrier = threading.Barrier(len(args_list))
    results = [None] * len(args_list)

    def worker(i, args):
        try:
            barrier.wait()
            results[i] = (fn(*args), None)
        except Exception as exc:  # collected for the test to assert on
            results[i] = (None, exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i, a)) for i, a in enumerate(args_list)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return results
