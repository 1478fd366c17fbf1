"""`certhub console` as an operator runs it: its own process over the hub's database,
HTTPS with the hub's certificate, the URL printed, a clean exit on SIGTERM."""

from __future__ import annotations

import re
import signal
import ssl
import subprocess
import sys
import time
import urllib.request

import pytest
from support.hubs import RunningHub
from support.processes import REPO, certhub_env

START_SECONDS = 60.0


@pytest.mark.slow
def test_console_process_serves_and_stops(running_hub: RunningHub) -> None:
    url = running_hub.engine.url.render_as_string(hide_password=False)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "certhub.hub.cli.main",
            "console",
            "--data-dir",
            str(running_hub.config.data_dir),
            "--db",
            url,
            "--console-address",
            "127.0.0.1:0",
        ],
        cwd=REPO,
        env=certhub_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + START_SECONDS
        printed = ""
        assert process.stderr is not None
        # The start-up line is a log line on stderr, like `certhub serve`'s banner.
        while time.monotonic() < deadline and "certhub console on " not in printed:
            line = process.stderr.readline()
            if not line and process.poll() is not None:
                break
            printed += line
        found = re.search(r"certhub console on (https://127\.0\.0\.1:\d+/)", printed)
        assert found, printed
        context = ssl.create_default_context(cafile=str(running_hub.config.pki.ca_cert))
        context.check_hostname = False  # the server certificate names localhost, not the IP
        with urllib.request.urlopen(found.group(1) + "transparency", context=context) as page:
            assert page.status == 200
            assert "核验我的回执" in page.read().decode()
        with urllib.request.urlopen(found.group(1) + "metrics", context=context) as metrics:
            assert b"certhub_reform_exemption_rate" in metrics.read()
    finally:
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=60)
    assert process.returncode == 0
    assert out == "", f"stdout stays free of start-up text: {out!r}"


@pytest.mark.slow
def test_console_refuses_a_bad_address_naming_it(running_hub: RunningHub) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "certhub.hub.cli.main",
            "console",
            "--data-dir",
            str(running_hub.config.data_dir),
            "--console-address",
            "nowhere",
        ],
        cwd=REPO,
        env=certhub_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2
    assert "'nowhere' is not host:port" in done.stderr
