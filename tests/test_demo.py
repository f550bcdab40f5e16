"""``sgcache demo`` end to end: started as a user starts it, queried with the real client, a
change made on the site seen through the proxy within 2 s, and a clean stop on Ctrl-C."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid

import pytest
import requests
import shotgun_api3
import sqlalchemy as sa
from conftest import ROOT

SCRIPT = {"script_name": "sgcache", "api_key": "sgcache-demo-key"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


class RunningDemo:
    def __init__(self, tmp_path, *args: str):
        self.proxy_port, self.site_port = free_port(), free_port()
        self.output_path = tmp_path / "demo.out"
        self._out = open(self.output_path, "w")  # noqa: SIM115 - the demo writes here while it runs
        env = {k: v for k, v in os.environ.items() if not k.startswith("SGCACHE_")}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "sgcache", "--config", str(ROOT / "sgcache.yml"), "demo", "--dir",
             str(tmp_path / "demo"), "--bind", f"127.0.0.1:{self.proxy_port}", "--site-bind",
             f"127.0.0.1:{self.site_port}", "--latency-ms", "20", *args],
            cwd=ROOT, env=env, stdout=self._out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def output(self) -> str:
        return self.output_path.read_text()

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while "sgcache demo ready" not in self.output():
            assert self.process.poll() is None, self.output()
            assert time.monotonic() < deadline, self.output()
            time.sleep(0.2)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # what Ctrl-C sends
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                raise
        self._out.close()
        return self.process.returncode


def run_demo(tmp_path, *args: str) -> None:
    demo = RunningDemo(tmp_path, *args)
    try:
        demo.wait_ready()
        out = demo.output()
        proxy_url, site_url = f"http://127.0.0.1:{demo.proxy_port}", f"http://127.0.0.1:{demo.site_port}"
        assert f"sg = shotgun_api3.Shotgun('{proxy_url}', script_name='sgcache', api_key='sgcache-demo-key')" in out
        assert f"Status page: {proxy_url}/_sgcache/" in out
        assert "find_one Shot by id" in out and "DIFFERENT" not in out
        assert out.count("  same\n") == 4

        proxy = shotgun_api3.Shotgun(proxy_url, **SCRIPT)
        site = shotgun_api3.Shotgun(site_url, **SCRIPT)
        shots = proxy.find("Shot", [], ["code", "description"], order=[{"field_name": "id", "direction": "asc"}])
        assert shots == site.find("Shot", [], ["code", "description"], order=[{"field_name": "id",
                                                                               "direction": "asc"}])
        assert len(shots) > 50
        before = requests.get(proxy_url + "/_sgcache/status", timeout=10).json()["proxy"]["answered_from_cache"]
        assert before >= 1

        # A change made on the site, not through sgcache: the watcher brings it in.
        text = f"changed on the site {uuid.uuid4().hex[:8]}"
        site.update("Shot", shots[0]["id"], {"description": text})
        changed_at = time.monotonic()
        while True:
            seen = proxy.find_one("Shot", [["id", "is", shots[0]["id"]]], ["description"])
            if seen["description"] == text:
                break
            # The watcher idles at most watcher.poll_interval (1 s) between polls; 5 s leaves room for a
            # loaded CI runner (the delay itself is measured by bench/sync_latency.py).
            assert time.monotonic() - changed_at < 5.0, "the change did not show through the proxy within 5 s"
            time.sleep(0.05)
        status = requests.get(proxy_url + "/_sgcache/status", timeout=10).json()
        assert status["proxy"]["answered_from_cache"] > before + 1  # the polls were cached answers
        assert status["health"]["status"] == "ok"
    finally:
        code = demo.stop()
    out = demo.output()
    assert code == 0, out
    assert "stopping: web, sync, site" in out and out.rstrip().endswith("stopped")
    assert "Traceback" not in out
    assert not listening(demo.proxy_port) and not listening(demo.site_port)


def test_the_demo_on_sqlite(tmp_path):
    run_demo(tmp_path)
    assert (tmp_path / "demo" / "cache.sqlite").exists()
    assert (tmp_path / "demo" / "site.json").exists()  # the stand-in's data, kept for the next run


@pytest.mark.postgresql
def test_the_demo_on_postgresql(tmp_path, pg_url):
    run_demo(tmp_path, "--database", pg_url)
    engine = sa.create_engine(pg_url.replace("postgresql://", "postgresql+psycopg2://", 1))
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM shot")).scalar() > 50
    engine.dispose()


def test_the_demo_refuses_a_port_in_use(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "sgcache", "--config", str(ROOT / "sgcache.yml"), "demo",
                                 "--dir", str(tmp_path / "demo"), "--bind", f"127.0.0.1:{port}"],
                                cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert f"127.0.0.1:{port} is already in use (another demo or proxy?): stop it, or choose another address " \
           "with --bind" in result.stderr


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGHUP], ids=["ctrl-c", "terminal-closed"])
def test_no_child_outlives_the_demo_when_its_output_pipe_is_gone(tmp_path, signum):
    # make demo | tee demo.log, then Ctrl-C: tee dies first, and the demo's next line hits a
    # closed pipe; its children (in sessions of their own) must still be stopped.
    proxy_port, site_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SGCACHE_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "sgcache", "--config", str(ROOT / "sgcache.yml"), "demo", "--dir",
         str(tmp_path / "demo"), "--bind", f"127.0.0.1:{proxy_port}", "--site-bind", f"127.0.0.1:{site_port}",
         "--latency-ms", "0", "--no-compare", "--no-progress"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        seen = b""
        deadline = time.monotonic() + 120
        while b"sgcache demo ready" not in seen:
            line = process.stdout.readline()
            assert line or process.poll() is None, seen.decode(errors="replace")
            assert time.monotonic() < deadline, seen.decode(errors="replace")
            seen += line
        assert listening(proxy_port) and listening(site_port)
        process.stdout.close()  # the reader of the demo's output is gone
        process.send_signal(signum)
        process.wait(timeout=60)
        deadline = time.monotonic() + 10
        while (listening(proxy_port) or listening(site_port)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not listening(proxy_port) and not listening(site_port)
    finally:
        if process.poll() is None:
            process.kill()
