#!/usr/bin/env python3
"""Drive `ra gateway` with the reference package's own client, `rewardanything.Client` 1.0.1,
unmodified (installed by scripts/setup-python.sh).

    python reference_client.py check --url http://127.0.0.1:8200 [--api-key KEY]
    python reference_client.py check-down --url http://127.0.0.1:8200

`check` expects a gateway in front of ra-mock (which scores a response `K` when its text
holds `score=K`, and sleeps `[[latency-ms:N]]` of a prompt) and fails (exit 1) at the first
result that is wrong, missing or attributed to another request. `check-down` expects a
gateway whose upstream is down: `health_check()` must say False.

`load_client()` is what the benchmark (scripts/bench_gateway.py) imports too.
"""
import argparse
import importlib
import importlib.util
import random
import sys
import types


def load_client():
    """The reference `Client` class, without running the package's __init__ (it imports
    torch and transformers, which only local inference needs)."""
    spec = importlib.util.find_spec("rewardanything")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("rewardanything is not installed: run `eval \"$(scripts/setup-python.sh)\"` "
                 "and use $RA_TEST_PYTHON")
    package = types.ModuleType("rewardanything")
    package.__path__ = list(spec.submodule_search_locations)
    sys.modules["rewardanything"] = package
    return importlib.import_module("rewardanything.client").Client


def fail(message):
    print(f"FAIL: {message}", file=sys.stderr)
    sys.exit(1)


def expect(cond, message):
    if not cond:
        fail(message)


def make_request(rng, i):
    """A request whose every score is known: each response carries `score=K`, and the
    prompt a random latency so that answers finish out of order."""
    names = rng.sample(["alice", "bob", "carol", "dave", "erin", "frank"], rng.randint(2, 4))
    # Distinct scores: the ranking is then fully determined whatever the masking.
    scores = dict(zip(names, rng.sample(range(1, 6), len(names))))
    responses = {name: f"answer {i} of {name}: score={s}" for name, s in scores.items()}
    prompt = f"question {i} [[latency-ms:{rng.randint(0, 60)}]]"
    request = {"principle": "Prefer correct answers.", "prompt": prompt, "responses": responses}
    if i % 3 == 0:
        request["mask_responses"] = False
    return request, scores


def ranking_of(scores):
    """By score, highest first (the scores of a request are distinct)."""
    return sorted(scores, key=lambda n: -scores[n])


def check_result(result, scores, where):
    expect(result.scores == scores, f"{where}: scores {result.scores} != {scores}")
    expect(all(isinstance(v, int) for v in result.scores.values()),
           f"{where}: whole scores should come back as ints, like the reference's")
    expect(result.ranking == ranking_of(scores), f"{where}: ranking {result.ranking}")
    expect(isinstance(result.reasoning, str) and result.reasoning, f"{where}: no reasoning")


def check(url, api_key, batch):
    Client = load_client()
    import requests

    client = Client(url, api_key=api_key, timeout=60.0, max_retries=0)
    expect(client.health_check() is True, "health_check() is not True")
    rng = random.Random(7)

    request, scores = make_request(rng, 0)
    check_result(client.judge(request["principle"], request["prompt"], request["responses"]),
                 scores, "judge")
    request, scores = make_request(rng, 1)
    check_result(client.judge(request["principle"], request["prompt"], request["responses"],
                              mask_responses=False), scores, "judge unmasked")

    pairs = [make_request(rng, i) for i in range(batch)]
    results = client.judge_batch([r for r, _ in pairs])
    expect(len(results) == batch, f"judge_batch gave {len(results)} results for {batch}")
    for i, (result, (_, scores)) in enumerate(zip(results, pairs)):
        check_result(result, scores, f"judge_batch[{i}]")

    if api_key:
        anonymous = Client(url, timeout=10.0, max_retries=0)
        try:
            anonymous.judge("p", "q", {"a": "x", "b": "y"})
            fail("a call without the key was accepted")
        except requests.HTTPError as e:
            expect(e.response.status_code == 401, f"without the key: {e}")
        expect(anonymous.health_check() is True, "/health should not need the key")
    print(f"ok: judge x2, judge_batch of {batch} in order, health_check"
          + (", 401 without the key" if api_key else ""))


def check_down(url):
    Client = load_client()
    client = Client(url, timeout=10.0, max_retries=0)
    expect(client.health_check() is False, "health_check() is True with no upstream")
    print("ok: health_check() is False with no upstream")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["check", "check-down"])
    p.add_argument("--url", required=True)
    p.add_argument("--api-key")
    p.add_argument("--batch", type=int, default=300)
    a = p.parse_args()
    if a.mode == "check":
        check(a.url, a.api_key, a.batch)
    else:
        check_down(a.url)


if __name__ == "__main__":
    main()
