"""The bench's fake embeddings server process counts the inputs it answers: the ingestion bench prints, per
phase, how many texts each system sent, from this count."""

from __future__ import annotations

import openai

from bench.fake_server import fake_openai_process


def test_fake_server_process_counts_embedding_inputs() -> None:
    with fake_openai_process() as fake:
        assert fake.inputs_sent() == 0
        client = openai.OpenAI(base_url=fake.base_url, api_key="sk-test", max_retries=0)
        client.embeddings.create(model="text-embedding-3-small", input=["a", "b", "c"])
        client.embeddings.create(model="text-embedding-3-small", input="one more")
        assert fake.inputs_sent() == 4
        assert fake.inputs_sent() == 4  # asking does not count
    assert fake.proc.returncode == 0
