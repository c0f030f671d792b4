"""rewardanything_rs.openrlhf: prompt cutting, and reward_func loaded from a file and
called as OpenRLHF 0.11 does (spec_from_file_location, then
asyncio.to_thread(reward_func, [query], [prompt], [label]))."""

from __future__ import annotations

import asyncio
import importlib.util
import json

from rewardanything_rs.openrlhf import cut_response, label_principle, user_question

CHATML_PROMPT = (
    "<|im_start|>system\nYou are helpful.<|im_end|>\n"
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"
)
LLAMA3_PROMPT = (
    "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
    "<|start_header_id|>user<|end_header_id|>\n\nName a prime.<|eot_id|>"
    "<|start_header_id|>assistant<|end_header_id|>\n\n"
)


def test_cutting():
    assert user_question(CHATML_PROMPT) == "What is 2+2?"
    assert user_question(LLAMA3_PROMPT) == "Name a prime."
    assert user_question("plain question") == "plain question"
    assert cut_response(CHATML_PROMPT + "4<|im_end|>\n<|endoftext|>", CHATML_PROMPT) == "4"
    assert cut_response(LLAMA3_PROMPT + "Seven.<|eot_id|>", LLAMA3_PROMPT) == "Seven."
    # The prompt was truncated (not a prefix): the last assistant header decides.
    assert cut_response("...<|im_start|>assistant\nfour</s>", "different prompt") == "four"
    assert cut_response("Q: hi A: hello</s></s>", "Q: hi A:") == "hello"
    assert label_principle('{"principle": "Be kind."}') == "Be kind."
    assert label_principle({"principle": "X"}) == "X"
    assert label_principle("42") is None and label_principle(None) is None


def load_like_openrlhf(path):
    spec = importlib.util.spec_from_file_location("reward_func", str(path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.reward_func


def test_reward_func_from_a_file(env_client, tmp_path, monkeypatch):
    path = tmp_path / "ra_reward.py"
    path.write_text("from rewardanything_rs.openrlhf import reward_func  # noqa: F401\n")
    reward_func = load_like_openrlhf(path)
    monkeypatch.setenv("RA_PRINCIPLE", "Be correct.")

    async def rollouts():
        calls = [
            asyncio.to_thread(reward_func, [CHATML_PROMPT + "4 score=5<|im_end|>"], [CHATML_PROMPT], ["4"]),
            asyncio.to_thread(reward_func, [LLAMA3_PROMPT + "Nine score=1<|eot_id|>"], [LLAMA3_PROMPT], [json.dumps({"principle": "Primes only."})]),
            asyncio.to_thread(reward_func, ["plain [[fault:400]] x"], ["plain [[fault:400]]"], [None]),
        ]
        return await asyncio.gather(*calls)

    ok, low, failed = asyncio.run(rollouts())
    assert ok == {"rewards": [5.0], "scores": [5.0], "extra_logs": {"ra_failed": [0.0], "ra_consistent": [1.0]}}
    assert low["rewards"] == [1.0] and low["extra_logs"]["ra_failed"] == [0.0]
    assert failed["rewards"] == [0.0] and failed["extra_logs"]["ra_failed"] == [1.0]
    monkeypatch.setenv("RA_NORMALIZE", "unit")
    out = reward_func([CHATML_PROMPT + "a score=3", CHATML_PROMPT + "b score=5"], [CHATML_PROMPT] * 2, ["", ""])
    assert out["rewards"] == [0.5, 1.0] and out["scores"] == [3.0, 5.0]
    # The two queries sharing a question went in one listwise call.
    assert env_client.stop()["chat_requests"] == 4
