"""The gateway, the client and the CLI must stay light: no torch, no sentence-transformers."""

import subprocess
import sys


def test_gateway_and_client_import_without_torch() -> None:
    code = (
        "import sys, embedfleet.gateway.server, embedfleet.client, embedfleet.client.cli, embedfleet.gateway.queue\n"
        "heavy = sorted(m for m in ('torch', 'sentence_transformers', 'transformers') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
