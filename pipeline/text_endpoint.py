"""Descriptions from an OpenAI-compatible chat-completions endpoint, with the template as fall-back.

The prompt is built from the same facts as the template. The API key is read from an environment
variable and never logged or recorded. Each request has a timeout; failures are retried with
exponential backoff; when every try fails the template's text is used and the failure is returned
for the rejects.
"""

from __future__ import annotations

import json
import logging
import os
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

from unigeo.pipeline.text import Description, PlaceFacts, TemplateGenerator, facts_digest

log = logging.getLogger(__name__)

SYSTEM_PROMPT = (
    "You write one short paragraph (2-4 sentences) describing a place for a geospatial dataset. Use only "
    "the facts given: the metro, the neighbourhood if any, the nearby points of interest (nearest and most "
    "telling first; name the nearest named ones), building heights and the built, green and water shares. "
    "No lists, no invented names."
)


def build_prompt(facts: PlaceFacts) -> str:
    return "Facts:\n" + json.dumps(facts.as_json(), sort_keys=True, indent=1)


@dataclass
class EndpointGenerator:
    """Chat-completions client; ``url`` is the API base (``.../v1``) or the full completions URL."""

    url: str
    model: str
    key_env: str = "UNIGEO_TEXT_API_KEY"
    timeout_s: float = 30.0
    retries: int = 3
    backoff_s: float = 1.0
    name: str = "endpoint"
    version: str = "1"

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"text endpoint must be an http(s) URL, got {self.url!r}")
        if self.retries < 1 or self.timeout_s <= 0:
            raise ValueError("text endpoint needs retries >= 1 and a positive timeout")

    @property
    def completions_url(self) -> str:
        u = self.url.rstrip("/")
        return u if u.endswith("/chat/completions") else u + "/chat/completions"

    def _request(self, prompt: str, seed: int) -> str:
        body = json.dumps({"model": self.model, "temperature": 0, "seed": seed, "messages": [
            {"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": prompt}]}).encode()
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        req = urllib.request.Request(self.completions_url, data=body, headers=headers, method="POST")
        with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
            payload = json.loads(resp.read())
        text = payload["choices"][0]["message"]["content"].strip()
        if not text:
            raise ValueError("empty completion")
        return str(text)

    def describe(self, facts: PlaceFacts, seed: int, key: str) -> Description:
        """The endpoint's description, or the template's with the reason the endpoint failed."""
        prompt = build_prompt(facts)
        error = ""
        for attempt in range(self.retries):
            try:
                text = self._request(prompt, seed)
                return Description(text, {"generator": self.name, "version": self.version, "model": self.model,
                                          "poi_ids": [p.poi_id for p in facts.pois],
                                          "prompt_sha256": facts_digest(facts, SYSTEM_PROMPT + prompt)})
            except (urllib.error.URLError, TimeoutError, OSError, ValueError, KeyError, IndexError) as e:
                error = f"{type(e).__name__}: {e}"
                log.debug("text endpoint attempt %d for %s failed: %s", attempt + 1, key, error)
                if attempt + 1 < self.retries:
                    time.sleep(self.backoff_s * 2**attempt)
        fallback = TemplateGenerator().describe(facts, seed, key)
        return Description(fallback.text, {**fallback.provenance, "fallback_from": self.name},
                           f"{self.retries} attempts failed; last: {error}")
