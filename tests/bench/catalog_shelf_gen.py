"""A synthetic shelf of N catalog listings, written straight into a catalog database.

Deterministic (one seed): ~60 % models, 30 % data sets, 10 % compute products; 1-5 languages
from a skewed distribution (en on most, zh / zh-Hans common, a long tail of rare ones); a
licence from a realistic set (SPDX ids, an ``OR`` expression, ``LicenseRef-*``); 1-8 tags from a
~300-word vocabulary with Zipf-like frequencies; tiers open 50 % / registered 30 % / verified
15 % / restricted 5 %; ~90 % published; a 0.5-4 KiB markdown card of vocabulary words (Chinese
sentences on listings in Chinese); names like ``qwen2.5-7B Instruct``.

The rows are the ones the service writes (`CatalogApi._saved` / `store.index_listing`), made
with the service's own functions: `domain.basic_view` (the `basic` column), `domain.facets`
(`listing_facets`), `domain.search_fields` with `search_text.fts5_text` (the FTS5 table) or
`search_text.pg_document` and `store.PG_WEIGHTS` (the tsvector). Listings with revisions > 1
keep one `listing_revisions` row per revision, as published updates do.

The database is first migrated with the service's migrations (``aisuper.platform.migrations``),
then filled in batches (`executemany` on SQLite; ``COPY`` on PostgreSQL), then ``ANALYZE``d.

`cached_sqlite_shelf` keeps the SQLite file and the tsvector literals under
``.build/bench/catalog-shelf-v<GENERATOR_VERSION>-<n>-<seed>-<fingerprint>/`` (the fingerprint
hashes the service code that decides the rows: domain.py, search_text.py, store.py and the
migrations), so that a rerun copies a file instead of generating; `load_postgres` fills a
PostgreSQL database from that cache.

    uv run --frozen python tests/bench/catalog_shelf_gen.py --listings 100000

builds (or reuses) the cache and prints its path and a few distribution figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import hashlib
import itertools
import json
import math
import multiprocessing
import os
import random
import shutil
import sqlite3
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_common import BENCH_CACHE, log

from aisuper.catalog.v1 import catalog_pb2 as pb
from aisuper_catalog import domain, search_text, store

#: Bump when the generated shelf changes: the cache is keyed by it.
GENERATOR_VERSION = 1
SEED = 20261129
BATCH = 2_000

# --- vocabularies -----------------------------------------------------------------------------


def _w(text: str) -> list[str]:
    return text.split()


_TASKS = _w("""chat instruct code math reasoning translation summarization embeddings rerank ocr
asr tts vision multimodal agent tool-use function-calling rag retrieval classification ner
sentiment qa dialogue completion fill-in-the-middle text-to-sql text-to-image image-to-text
captioning segmentation detection speech diarization keyword-extraction paraphrase
question-generation grammar-correction story-writing roleplay chain-of-thought planning
long-context search recommendation anomaly-detection forecasting tabular time-series
document-understanding table-qa chart-qa visual-qa video-qa audio-classification
music-generation voice-cloning lip-sync pose-estimation depth-estimation""")
_DOMAINS = _w("""medical legal finance education ecommerce gaming biology chemistry climate
agriculture energy manufacturing automotive aviation logistics retail insurance banking
healthcare pharma genomics proteins materials physics astronomy geology government policy
news social-media customer-service hr marketing advertising cybersecurity telecom robotics
autonomous-driving smart-city tourism sports music film literature poetry history philosophy
religion law-enforcement patents scientific-papers software devops""")
_TECH = _w("""moe dense gguf awq gptq int4 int8 fp8 bf16 fp16 lora qlora distilled quantized
pruned merged base sft rlhf dpo orpo grpo instruction-tuned pretrained continued-pretraining
small tiny large 128k-context 32k-context 1m-context flash-attention gqa mla rope alibi
sliding-window onnx tensorrt vllm sglang llama-cpp mlx openvino coreml tflite safetensors
transformers pytorch jax paddle mindspore""")
_DATA = _w("""web-crawl synthetic curated parallel-corpus instruction-data preference-data
pretraining-data benchmark evaluation human-annotated crowdsourced deduplicated filtered
cleaned tokenized jsonl parquet arrow csv common-crawl wikipedia books arxiv github
stackexchange forums subtitles transcripts speech-corpus image-text video-text
math-problems code-pairs dialogues red-teaming safety toxicity bias pii-removed
license-clean""")
_LANG_TAGS = _w("""chinese english multilingual cantonese japanese korean arabic french german
spanish russian portuguese vietnamese thai indonesian hindi swahili tibetan uyghur
mongolian""")
_HARDWARE = _w("""h100 h200 h800 a100 a800 l40s l20 rtx4090 ascend ascend-910b mi300x gaudi2
tpu-v5e nvlink infiniband roce spot reserved on-demand bare-metal kubernetes slurm
serverless""")

#: General words of cards, most common first (Zipf-like weights by rank).
_CARD_WORDS = _w("""the model a of and to is in for on with data this it trained training we
use are be by as from that can tokens dataset results evaluation performance license
benchmark language tasks fine-tuned base context length parameters inference quality
version release weights available open research commercial usage recommended prompt
input output examples format languages support accuracy score compared previous larger
smaller faster efficient memory gpu hours cost throughput latency batch size learning rate
steps epochs optimizer adamw warmup cosine schedule mixed precision checkpoint tokenizer
vocabulary sentencepiece bpe byte-level attention layers heads hidden dimension
feed-forward activation swiglu normalization rmsnorm positional embedding rotary
architecture transformer decoder encoder mixture experts routing sparse active total
pretraining corpus sources filtering deduplication quality classifier heuristic rules
safety alignment human feedback preference optimization reward supervised reinforcement
limitations bias risks intended uses out-of-scope misuse harmful content evaluation
metrics leaderboard mmlu gsm8k humaneval mbpp math arc hellaswag truthfulqa ceval cmmlu
gaokao agieval bbh drop ifeval mt-bench alpacaeval arena elo win-rate pass@1 exact-match
f1 bleu rouge wer cer accuracy top-1 top-5 recall precision latency p50 p99 tokens/s
deployment serving quantization export conversion hardware requirements vram ram disk
storage download mirror citation authors acknowledgements contact issues community
discussion changelog updated fixed improved added removed deprecated known problems
hallucination repetition refusal jailbreak robustness multilingual crosslingual transfer
zero-shot few-shot in-context retrieval augmented generation tools functions json schema
structured outputs streaming api endpoint openai-compatible rate limits pricing billing
region availability sla uptime support tickets documentation tutorial quickstart install
pip docker image container kubernetes helm chart cluster nodes interconnect bandwidth
storage throughput iops network egress ingress backups snapshots monitoring logging
metrics alerts dashboards access control keys tokens organisation verified registered
restricted request approval purpose audit compliance privacy gdpr pipl retention deletion
provenance collection crawled licensed public domain copyright attribution noncommercial
sharealike derivative redistribution terms conditions warranty liability""")

_CHINESE_WORDS = _w("""模型 数据集 中文 英文 推理 训练 医疗 法律 金融 教育 对话 代码 数学 翻译
摘要 问答 检索 增强 生成 多模态 图像 语音 视频 识别 合成 大规模 语料 高质量 清洗 去重 标注
人工 合成数据 指令 微调 偏好 对齐 安全 评测 基准 性能 准确率 上下文 长度 参数 量化 部署
推理速度 显存 算力 集群 云服务 区域 价格 许可 商用 开源 研究 用途 限制 风险 偏见 隐私 合规
来源 网页 书籍 论文 百科 新闻 社交媒体 客服 电商 游戏 农业 能源 制造 汽车 交通 政务 科研
古诗 文言文 方言 粤语 普通话 繁体 简体 分词 词表 嵌入 向量 排序 重排 智能体 工具调用 函数
结构化 输出 流式 接口 文档 教程 社区 更新 版本 发布 权重 下载 镜像""")

_FAMILIES = _w("""qwen2.5 qwen3 qwen2-vl qwen2.5-coder qwen2.5-math llama-3.1 llama-3.2 llama-3.3
deepseek-v3 deepseek-r1 deepseek-r1-distill deepseek-coder-v2 mistral mixtral ministral
glm-4 chatglm3 yi-1.5 baichuan2 internlm2.5 internvl2 minicpm phi-3 phi-4 gemma-2 gemma-3
falcon olmo-2 pythia bloom bloomz mt5 t5 flan-t5 bge-m3 bge-large gte-qwen2 e5-mistral
jina-embeddings xlm-roberta bert-base roberta-large whisper sensevoice cosyvoice paraformer
stable-diffusion sdxl flux kolors hunyuan-dit wan2.1 cogvideox step-1 moonlight kimi-vl
skywork telechat xverse aquila openchat starcoder2 codegemma granite-3 command-r aya-23
solar orion nemotron smollm2 tinyllama""")
_SIZES = ["0.5B", "1.5B", "1.8B", "3B", "6B", "7B", "8B", "9B", "13B", "14B", "32B", "34B",
          "70B", "72B", "110B", "235B", "671B"]  # fmt: skip
_SIZE_WEIGHTS = [4, 6, 2, 5, 2, 10, 8, 3, 3, 6, 5, 2, 4, 3, 1, 1, 1]
_VARIANTS = ["Instruct", "Base", "Chat", "Coder", "Math", "VL", "AWQ", "GGUF", "GPTQ-Int4",
             "Distill", "Preview", "Embed", "Reranker", "Medical", "Legal", "Finance"]  # fmt: skip
_DATASET_TOPICS = _w("""web news books code math dialogue instructions preferences medical-qa
legal-cases finance-reports patents papers wiki forum subtitles speech images captions
video-clips poems classical-chinese exam-questions customer-service ecommerce-reviews
product-search translations safety-prompts red-team tables charts receipts""")
_GPUS: list[tuple[str, int, str]] = [
    ("H100", 80, "NVIDIA"),
    ("H200", 141, "NVIDIA"),
    ("H800", 80, "NVIDIA"),
    ("A100", 80, "NVIDIA"),
    ("A800", 80, "NVIDIA"),
    ("L40S", 48, "NVIDIA"),
    ("L20", 48, "NVIDIA"),
    ("RTX 4090", 24, "NVIDIA"),
    ("Ascend 910B", 64, "Huawei"),
    ("MI300X", 192, "AMD"),
    ("Gaudi 2", 96, "Intel"),
]
_REGIONS = ["cn-east-1", "cn-east-2", "cn-north-1", "cn-south-1", "cn-west-1", "hk-1",
            "sg-1", "eu-central-1", "us-west-1"]  # fmt: skip

#: (BCP-47 tag, share of listings with languages that carry it); canonical forms.
_LANGUAGES: list[tuple[str, float]] = [
    ("en", 0.80), ("zh", 0.30), ("zh-Hans", 0.12), ("zh-Hant", 0.03), ("ja", 0.06),
    ("ko", 0.05), ("fr", 0.06), ("de", 0.06), ("es", 0.06), ("ru", 0.04), ("ar", 0.03),
    ("pt", 0.03), ("pt-BR", 0.02), ("it", 0.02), ("vi", 0.02), ("id", 0.02), ("hi", 0.02),
    ("th", 0.015), ("tr", 0.015), ("nl", 0.01), ("pl", 0.01), ("yue", 0.01), ("fa", 0.01),
    ("he", 0.01), ("uk", 0.01), ("bn", 0.008), ("ms", 0.008), ("ta", 0.005), ("ur", 0.005),
    ("cs", 0.005), ("sv", 0.005), ("te", 0.004), ("fi", 0.004), ("el", 0.004), ("ro", 0.004),
    ("hu", 0.004), ("fil", 0.004), ("sw", 0.004), ("ha", 0.003), ("yo", 0.003), ("ug", 0.003),
    ("mn", 0.003), ("kk", 0.003), ("bo", 0.002), ("am", 0.002), ("km", 0.002), ("lo", 0.002),
    ("my", 0.002), ("ne", 0.002), ("si", 0.002), ("zu", 0.001), ("mi", 0.001),
]  # fmt: skip
_LANGUAGE_COUNT_WEIGHTS = [45, 30, 12, 8, 5]  # 1..5 languages

_LICENSES: list[tuple[str, float]] = [
    ("Apache-2.0", 0.33), ("MIT", 0.22), ("CC-BY-4.0", 0.10), ("CC-BY-NC-4.0", 0.07),
    ("Apache-2.0 OR MIT", 0.05), ("CC-BY-SA-4.0", 0.04), ("LicenseRef-llama3-community", 0.04),
    ("LicenseRef-qwen-license", 0.03), ("LicenseRef-deepseek-model-license", 0.02),
    ("BSD-3-Clause", 0.02), ("CC0-1.0", 0.02), ("ODC-BY-1.0", 0.01), ("GPL-3.0-only", 0.01),
    ("CC-BY-NC-SA-4.0", 0.02), ("LicenseRef-openrail-m", 0.01), ("LicenseRef-gemma-terms", 0.01),
]  # fmt: skip
_TIERS = [(1, 0.50), (2, 0.30), (3, 0.15), (4, 0.05)]  # open, registered, verified, restricted
_STATES = [(2, 0.90), (1, 0.06), (3, 0.04)]  # published, draft, deprecated
_KINDS = [(1, 0.60), (2, 0.30), (3, 0.10)]  # model, dataset, compute product

_CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"


def _tag_vocabulary() -> list[str]:
    """~300 tags, most common first; real-looking compounds fill the tail."""
    head = _TASKS[:12] + _LANG_TAGS[:3] + _TECH[:10] + _DOMAINS[:10]
    rest = _TASKS[12:] + _DOMAINS[10:] + _TECH[10:] + _DATA + _LANG_TAGS[3:] + _HARDWARE
    words = list(dict.fromkeys(head + rest))
    for field in _DOMAINS[:12]:
        for task in ("qa", "chat", "ner", "classification"):
            if len(words) >= 300:
                break
            words.append(f"{field}-{task}")
    return [w for w in words if len(w) <= 40][:300]


TAGS = _tag_vocabulary()


def _pseudo_words(rng: random.Random, count: int) -> list[str]:
    """A long tail of made-up words (product names, jargon): the rare terms of the cards."""
    onsets = ["b", "k", "d", "f", "g", "h", "j", "l", "m", "n", "p", "r", "s", "t", "v", "z",
              "br", "kr", "st", "tr", "pl", "gr", "sh", "ch", "th", "qu"]  # fmt: skip
    vowels = ["a", "e", "i", "o", "u", "ai", "ou", "ei", "ia"]
    codas = ["", "", "n", "r", "s", "x", "l", "m", "nd", "rk", "st"]
    out: set[str] = set()
    while len(out) < count:
        syllables = rng.choice([2, 2, 3, 3, 4])
        out.add("".join(rng.choice(onsets) + rng.choice(vowels) for _ in range(syllables))
                + rng.choice(codas))  # fmt: skip
    return sorted(out)


def _zipf(n: int, s: float = 1.0) -> list[float]:
    return [1.0 / (rank**s) for rank in range(1, n + 1)]


def _cumulative(weights: Sequence[float]) -> list[float]:
    return list(itertools.accumulate(weights))


@dataclass(frozen=True)
class Vocabulary:
    """Words and their cumulative weights (for `random.choices(cum_weights=...)`)."""

    card_words: list[str]
    card_cum: list[float]
    rare_words: list[str]
    rare_cum: list[float]
    tags: list[str]
    tag_cum: list[float]


def vocabulary(seed: int = SEED) -> Vocabulary:
    rng = random.Random(seed ^ 0x5EED)
    words = list(dict.fromkeys(_CARD_WORDS + TAGS))
    rare = _pseudo_words(rng, 6000)
    return Vocabulary(
        card_words=words,
        card_cum=_cumulative(_zipf(len(words), 0.9)),
        rare_words=rare,
        rare_cum=_cumulative(_zipf(len(rare), 1.1)),
        tags=TAGS,
        tag_cum=_cumulative(_zipf(len(TAGS), 1.0)),
    )


# --- listings ---------------------------------------------------------------------------------


def _id(prefix: str, rng: random.Random, when: datetime) -> str:
    """`<prefix>_<ULID>` as `aisuper.platform.ids.new_id` makes, but seeded."""
    value = (int(when.timestamp() * 1000) << 80) | rng.getrandbits(80)
    chars = [_CROCKFORD[(value >> (5 * i)) & 31] for i in range(26)]
    return f"{prefix}_{''.join(reversed(chars))}"


def _pick(rng: random.Random, table: Sequence[tuple[int, float]]) -> int:
    return rng.choices([v for v, _ in table], weights=[w for _, w in table])[0]


def _distinct(rng: random.Random, items: Sequence[str], cum: Sequence[float], k: int) -> list[str]:
    found: list[str] = []
    while len(found) < k:
        item = rng.choices(items, cum_weights=cum)[0]
        if item not in found:
            found.append(item)
    return found


def _slugify(text: str) -> str:
    out = "".join(c if c.isalnum() or c in "._-" else "-" for c in text.lower())
    while "--" in out:
        out = out.replace("--", "-")
    return out.strip("-._")


class ShelfGenerator:
    """Yields `(listing, revisions)`: a full `catalog_pb2.Listing` as the service stores it."""

    def __init__(self, n: int, seed: int = SEED) -> None:
        self.n = n
        self.rng = random.Random(seed)
        self.vocab = vocabulary(seed)
        orgs = max(20, n // 50)
        start = datetime(2024, 1, 1, tzinfo=UTC)
        self.orgs = [_id("org", self.rng, start + timedelta(hours=i)) for i in range(orgs)]
        self.org_cum = _cumulative(_zipf(orgs, 0.8))
        self.providers = [self._provider_name(i) for i in range(orgs)]
        self.languages = [tag for tag, _ in _LANGUAGES]
        self.language_cum = _cumulative([w for _, w in _LANGUAGES])
        assert domain.normalise_languages(self.languages) == self.languages, "not canonical"
        self.licenses = {e: domain.normalise_license(e) for e, _ in _LICENSES}
        self.family_cum = _cumulative(_zipf(len(_FAMILIES), 0.7))
        self.slugs: set[str] = set()
        self.start = datetime(2024, 6, 1, tzinfo=UTC)

    def _provider_name(self, i: int) -> str:
        rng = self.rng
        known = ["DeepSeek", "Qwen Team", "Zhipu AI", "Moonshot", "Baichuan", "01.AI",
                 "Shanghai AI Lab", "BAAI", "Meta", "Mistral AI", "Google", "Microsoft",
                 "MiniMax", "StepFun", "iFlytek", "SenseTime", "Huawei Cloud", "Alibaba Cloud",
                 "Tencent", "ByteDance"]  # fmt: skip
        if i < len(known):
            return known[i]
        stem = rng.choice(self.vocab.rare_words[:3000]).capitalize()
        return f"{stem} {rng.choice(['AI', 'Labs', 'Research', 'Data', 'Cloud', 'Tech'])}"

    def _unique_slug(self, base: str) -> str:
        slug, n = base[:90], 2
        while slug in self.slugs:
            slug, n = f"{base[:86]}-{n}", n + 1
        self.slugs.add(slug)
        return slug

    def _sentence(self, rng: random.Random, words: int) -> str:
        v = self.vocab
        picked = rng.choices(v.card_words, cum_weights=v.card_cum, k=words)
        for _ in range(sum(rng.random() < 0.04 for _ in range(words))):
            picked[rng.randrange(words)] = rng.choices(v.rare_words, cum_weights=v.rare_cum)[0]
        text = " ".join(picked)
        return text[0].upper() + text[1:] + "."

    def _chinese(self, rng: random.Random, words: int) -> str:
        return "".join(rng.choices(_CHINESE_WORDS, k=words)) + "。"

    def _card(self, rng: random.Random, name: str, chinese: bool, tags: list[str]) -> str:
        target = int(512 + (4096 - 512) * rng.random() ** 2)  # 0.5-4 KiB, mostly short
        parts = [f"# {name}", ""]
        size = len(parts[0])
        section = 0
        while size < target:
            if rng.random() < 0.2:
                heading = rng.choice(["Overview", "Training", "Evaluation", "Usage",
                                      "Limitations", "Licence", "Data", "Pricing"])  # fmt: skip
                parts += ["", f"## {heading}", ""]
                section += 1
            if chinese and rng.random() < 0.3:
                line = self._chinese(rng, rng.randint(6, 20))
            elif rng.random() < 0.15:
                line = f"- **{rng.choice(tags)}**: " + self._sentence(rng, rng.randint(6, 14))
            else:
                line = self._sentence(rng, rng.randint(8, 24))
            parts.append(line)
            size += len(line.encode()) + 1
        return "\n".join(parts)[:4096]

    def listings(self) -> Iterator[tuple[pb.Listing, int]]:
        rng, v = self.rng, self.vocab
        span_s = 540 * 86400
        for i in range(self.n):
            kind = _pick(rng, _KINDS)
            org_index = rng.choices(range(len(self.orgs)), cum_weights=self.org_cum)[0]
            org_id = self.orgs[org_index]
            provider = self.providers[org_index]
            created = self.start + timedelta(seconds=span_s * i / self.n + rng.random())
            tags = _distinct(rng, v.tags, v.tag_cum, rng.randint(1, 8))
            if kind == pb.LISTING_KIND_COMPUTE_PRODUCT:
                languages: list[str] = []
            else:
                count = rng.choices(range(1, 6), weights=_LANGUAGE_COUNT_WEIGHTS)[0]
                languages = _distinct(rng, self.languages, self.language_cum, count)
            listing = pb.Listing(
                id=_id("lst", rng, created),
                kind=kind,
                org_id=org_id,
                provider=provider,
                tags=tags,
                languages=languages,
                access_tier=_pick(rng, _TIERS),
                license=self.licenses[rng.choices(list(self.licenses),
                                                  weights=[w for _, w in _LICENSES])[0]],
            )  # fmt: skip
            if kind == pb.LISTING_KIND_MODEL:
                family = rng.choices(_FAMILIES, cum_weights=self.family_cum)[0]
                size = rng.choices(_SIZES, weights=_SIZE_WEIGHTS)[0]
                variant = rng.choice(_VARIANTS)
                listing.name = f"{family}-{size} {variant}"
                listing.version = rng.choice(["1.0", "2.0", "2.5", "V3", "0324", "2025-01", "v2"])
                params = int(float(size[:-1]) * 1e9)
                vl = variant == "VL" or "vl" in family
                caps = [pb.CAPABILITY_EMBEDDINGS] if variant in ("Embed", "Reranker") else [
                    pb.CAPABILITY_CHAT, pb.CAPABILITY_COMPLETIONS]  # fmt: skip
                listing.model.CopyFrom(
                    pb.ModelAttributes(
                        family=family,
                        parameter_count=params,
                        active_parameter_count=params // 18 if "moe" in tags else 0,
                        context_length=rng.choice([4096, 8192, 32768, 131072, 1048576]),
                        input_modalities=[pb.MODALITY_TEXT, pb.MODALITY_IMAGE]
                        if vl
                        else [pb.MODALITY_TEXT],
                        output_modalities=[pb.MODALITY_TEXT],
                        capabilities=caps,
                        base_model=f"{family}-{size}" if variant != "Base" else "",
                        embedding_dimensions=1024 if variant in ("Embed", "Reranker") else 0,
                    )
                )
                price = rng.randint(1, 40) * 100_000
                listing.prices.CopyFrom(
                    pb.Prices(
                        input_per_million_tokens=price,
                        output_per_million_tokens=price * 4,
                        cached_input_per_million_tokens=price // 4,
                    )
                )
                base = f"{family}-{size}-{variant}"
            elif kind == pb.LISTING_KIND_DATASET:
                topic = rng.choice(_DATASET_TOPICS)
                lang = languages[0].split("-")[0] if languages else "multi"
                listing.name = f"{topic}-{lang} corpus v{rng.randint(1, 5)}"
                listing.version = f"{rng.randint(2023, 2026)}.{rng.randint(1, 12):02d}"
                listing.dataset.CopyFrom(
                    pb.DatasetAttributes(
                        token_count=rng.randint(1, 5000) * 10_000_000,
                        byte_count=rng.randint(1, 20000) * 100_000_000,
                        format=rng.choice(["jsonl", "parquet", "arrow", "csv", "webdataset"]),
                        modalities=[rng.choice([pb.MODALITY_TEXT] * 6 + [pb.MODALITY_IMAGE,
                                                pb.MODALITY_AUDIO, pb.MODALITY_VIDEO])],
                        provenance=self._sentence(rng, 12),
                        collection_method=rng.randint(1, 5),
                        update_cadence=rng.randint(1, 7),
                    )
                )  # fmt: skip
                listing.prices.per_dataset_access = rng.choice([0, 0, 0, 10_000_000])
                base = f"{_slugify(provider)}-{topic}-{lang}"
            else:
                gpu, memory, vendor = rng.choice(_GPUS)
                count = rng.choice([1, 2, 4, 8])
                region = rng.choice(_REGIONS)
                listing.name = f"{gpu} x{count} {region}"
                listing.version = "2025"
                listing.compute_product.CopyFrom(
                    pb.ComputeProductAttributes(
                        gpu_type=gpu,
                        gpu_memory_gib=memory,
                        interconnect=rng.choice(["NVLink 4.0, 900 GB/s", "PCIe 5.0", "HCCS"]),
                        region=region,
                        vendor=vendor,
                    )
                )
                listing.prices.per_gpu_hour = rng.randint(5, 60) * 1_000_000
                base = f"{_slugify(provider)}-{gpu}-x{count}-{region}"
            listing.slug = self._unique_slug(_slugify(base))
            chinese = any(lang.startswith(("zh", "yue")) for lang in languages)
            listing.card = self._card(rng, listing.name, chinese, tags)
            listing.source_urls.append(f"https://example.org/{listing.slug}")
            listing.state = _pick(rng, _STATES)  # type: ignore[assignment]
            revisions = 1
            listing.create_time.FromDatetime(created)
            updated = created
            if listing.state != pb.LISTING_STATE_DRAFT:
                published = created + timedelta(hours=rng.randint(1, 400))
                listing.publish_time.FromDatetime(published)
                updated = published
                revisions = rng.choices([1, 2, 3, 4], weights=[70, 18, 8, 4])[0]
                updated += timedelta(days=revisions - 1)
            if listing.state == pb.LISTING_STATE_DEPRECATED:
                updated += timedelta(days=30)
                listing.deprecate_time.FromDatetime(updated)
                listing.deprecation_reason = "superseded by a newer version"
            listing.revision = revisions
            listing.update_time.FromDatetime(updated)
            yield listing, revisions


# --- rows -------------------------------------------------------------------------------------


@dataclass
class Rows:
    listings: list[tuple[object, ...]]
    revisions: list[tuple[object, ...]]
    facets: list[tuple[str, str, str]]
    fts5: list[tuple[str, str, str, str, str]]
    pg: list[tuple[str, str]]


def _sqlite_time(value: datetime) -> str:
    """What `UtcDateTime` stores on SQLite (naive UTC, SQLAlchemy's string form)."""
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")


def rows_of(batch: list[tuple[pb.Listing, int]]) -> Rows:
    """The rows the service writes for these listings (see `CatalogApi._saved`)."""
    out = Rows([], [], [], [], [])
    for listing, revisions in batch:
        basic = domain.basic_view(listing).SerializeToString(deterministic=True)
        created = listing.create_time.ToDatetime(UTC)
        updated = listing.update_time.ToDatetime(UTC)
        lid, slug = listing.id, listing.slug
        out.listings.append(
            (lid, listing.org_id, slug, listing.kind, listing.state,
             listing.access_tier, listing.revision, basic, listing.card,
             _sqlite_time(created), _sqlite_time(updated))
        )  # fmt: skip
        for revision in range(1, revisions + 1):
            old = basic
            if revision < revisions:
                earlier = domain.basic_view(listing)
                earlier.revision = revision
                old = earlier.SerializeToString(deterministic=True)
            when = updated - timedelta(days=revisions - revision)
            out.revisions.append((lid, revision, old, listing.card, _sqlite_time(when)))
        out.facets += [(f, slug, lid) for f in domain.facets(listing)]
        texts = domain.search_fields(listing)
        name, tags, provider, card = (search_text.fts5_text(t) for t in texts)
        out.fts5.append((lid, name, tags, provider, card))
        out.pg.append((lid, search_text.pg_document(zip(texts, store.PG_WEIGHTS, strict=True))))
    return out


def _batches(n: int, seed: int) -> Iterator[list[tuple[pb.Listing, int]]]:
    batch: list[tuple[pb.Listing, int]] = []
    for item in ShelfGenerator(n, seed).listings():
        batch.append(item)
        if len(batch) == BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def _init_worker() -> None:
    """Memoises two pure functions of the service in a worker: `domain.license_ids` parses the
    SPDX expression on every call (the shelf has ~16 distinct ones), and `search_text.tokens`
    would otherwise cut every text twice (for FTS5 and for the tsvector)."""
    domain.license_ids = functools.cache(domain.license_ids)  # type: ignore[assignment]
    search_text.tokens = functools.lru_cache(maxsize=8)(search_text.tokens)  # type: ignore[assignment]


@contextlib.contextmanager
def _row_batches(n: int, seed: int) -> Iterator[Iterator[Rows]]:
    """The rows of the shelf, batch by batch, made by worker processes (one per core) while
    this one generates the listings."""
    context = multiprocessing.get_context("forkserver")
    with context.Pool(max(1, min(4, os.cpu_count() or 1)), initializer=_init_worker) as pool:
        yield pool.imap(rows_of, _batches(n, seed), chunksize=1)


def _migrate(url: str) -> None:
    from aisuper.platform.db import Database
    from aisuper.platform.migrations import migrate
    from aisuper_catalog.__main__ import MIGRATIONS

    async def run() -> None:
        db = Database(url)
        try:
            await migrate(db, MIGRATIONS)
        finally:
            await db.dispose()

    asyncio.run(run())


# --- SQLite -----------------------------------------------------------------------------------


def write_sqlite(path: Path, n: int, pg_out: Path | None = None, seed: int = SEED) -> None:
    """A migrated catalog database at `path` with `n` generated listings; the tsvector literal
    of every listing, one JSON line ``[listing_id, document]``, into `pg_out`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    _migrate(f"sqlite+aiosqlite:///{path}")
    started = time.monotonic()
    connection = sqlite3.connect(path, isolation_level=None)
    pg_file = pg_out.open("w") if pg_out is not None else None
    try:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=OFF")
        connection.execute("BEGIN")
        done = 0
        with _row_batches(n, seed) as batches:
            for rows in batches:
                _insert(connection, rows, pg_file)
                done += len(rows.listings)
                if done % 20_000 == 0 or done == n:
                    rate = done / (time.monotonic() - started)
                    log(f"shelf: {done:,} / {n:,} listings written ({rate:,.0f}/s)")
        connection.execute("COMMIT")
        connection.execute("INSERT INTO listing_search(listing_search) VALUES ('optimize')")
        connection.execute("ANALYZE")
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        connection.close()
        if pg_file is not None:
            pg_file.close()


def _insert(connection: sqlite3.Connection, rows: Rows, pg_file: TextIO | None) -> None:
    connection.executemany(
        "INSERT INTO listings (id, org_id, slug, kind, state, access_tier, revision, "
        "basic, card, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
        rows.listings,
    )
    connection.executemany(
        "INSERT INTO listing_revisions (listing_id, revision, basic, card, created_at) "
        "VALUES (?,?,?,?,?)",
        rows.revisions,
    )
    connection.executemany(
        "INSERT INTO listing_facets (facet, slug, listing_id) VALUES (?,?,?)", rows.facets
    )
    connection.executemany(
        "INSERT INTO listing_search (listing_id, name, tags, provider, card) VALUES (?,?,?,?,?)",
        rows.fts5,
    )
    if pg_file is not None:
        pg_file.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows.pg)


@dataclass(frozen=True)
class ShelfCache:
    directory: Path

    @property
    def sqlite(self) -> Path:
        return self.directory / "catalog.db"

    @property
    def pg_documents(self) -> Path:
        return self.directory / "pg_documents.jsonl"

    @property
    def done(self) -> Path:
        return self.directory / "complete"


def service_fingerprint() -> str:
    """A hash of the service code that decides the rows (derived data, tokens, schema): a
    change there makes a new shelf rather than benchmarking stale rows."""
    from aisuper_catalog.__main__ import MIGRATIONS

    package = Path(domain.__file__).parent
    files = [package / "domain.py", package / "search_text.py", package / "store.py"]
    files += sorted((MIGRATIONS / "versions").glob("*.py"))
    digest = hashlib.sha256()
    for file in files:
        digest.update(file.read_bytes())
    return digest.hexdigest()[:10]


def cached_sqlite_shelf(n: int, seed: int = SEED) -> ShelfCache:
    """The cached shelf of `n` listings, generated first when missing (older shelves of the
    same size are deleted: they are 1.5 GB each at 100,000 listings)."""
    prefix = f"catalog-shelf-v{GENERATOR_VERSION}-{n}-{seed}-"
    cache = ShelfCache(BENCH_CACHE / f"{prefix}{service_fingerprint()}")
    if cache.done.is_file():
        return cache
    for stale in BENCH_CACHE.glob(f"catalog-shelf-v*-{n}-*"):
        shutil.rmtree(stale, ignore_errors=True)
    cache.directory.mkdir(parents=True)
    log(f"generating a shelf of {n:,} listings into {cache.directory} (cached for reruns)")
    started = time.monotonic()
    write_sqlite(cache.sqlite, n, cache.pg_documents, seed)
    cache.done.write_text(f"{time.monotonic() - started:.1f} s\n")
    log(f"shelf generated in {time.monotonic() - started:.0f} s")
    return cache


def copy_sqlite(cache: ShelfCache, target: Path) -> Path:
    """A private copy of the cached database (the server's WAL must not touch the cache)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(cache.sqlite, target)
    return target


# --- PostgreSQL -------------------------------------------------------------------------------


def load_postgres(cache: ShelfCache, url: str) -> float:
    """Migrates the database at `url` and copies the cached shelf into it (COPY), then
    ``VACUUM ANALYZE``; returns the seconds it took."""
    started = time.monotonic()
    _migrate(url)
    asyncio.run(_copy_into_postgres(cache, url))
    return time.monotonic() - started


def _pg_time(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


_PG_TABLES = ["listings", "listing_revisions", "listing_facets", "listing_search"]


async def _drop_keys(connection: Any) -> list[str]:
    """Drops the loaded tables' constraints and indexes (COPY into bare tables, then one index
    build each, is several times faster than maintaining them row by row); returns the DDL
    that puts them back exactly as the migration made them, in order."""
    constraints = await connection.fetch(
        "SELECT c.conrelid::regclass::text AS tbl, c.conname, c.contype::text AS contype, "
        "pg_get_constraintdef(c.oid) AS def FROM pg_constraint c "
        "WHERE (c.conrelid::regclass::text = ANY($1::text[]) AND c.contype IN ('p', 'u', 'f')) "
        "OR (c.contype = 'f' AND c.confrelid::regclass::text = ANY($1::text[]))",
        _PG_TABLES,
    )
    indexes = await connection.fetch(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() "
        "AND tablename = ANY($1::text[]) AND indexname NOT IN "
        "(SELECT conname FROM pg_constraint)",
        _PG_TABLES,
    )
    for row in sorted(constraints, key=lambda r: r["contype"] != "f"):  # foreign keys first
        await connection.execute(f'ALTER TABLE {row["tbl"]} DROP CONSTRAINT "{row["conname"]}"')
    for row in indexes:
        await connection.execute(f'DROP INDEX "{row["indexname"]}"')

    def add(row: Any) -> str:
        return f'ALTER TABLE {row["tbl"]} ADD CONSTRAINT "{row["conname"]}" {row["def"]}'

    keys = [add(row) for row in constraints if row["contype"] != "f"]
    foreign = [add(row) for row in constraints if row["contype"] == "f"]
    return keys + [row["indexdef"] for row in indexes] + foreign


async def _copy_into_postgres(cache: ShelfCache, url: str) -> None:
    import asyncpg

    dsn = url.replace("postgresql+asyncpg://", "postgresql://")
    connection = await asyncpg.connect(dsn)
    source = sqlite3.connect(f"file:{cache.sqlite}?mode=ro", uri=True)
    try:
        await connection.execute("SET synchronous_commit = off")
        await connection.execute("SET maintenance_work_mem = '512MB'")
        restore = await _drop_keys(connection)
        tables: list[tuple[str, str, tuple[int, ...]]] = [
            ("listings", "id, org_id, slug, kind, state, access_tier, revision, basic, card, "
             "created_at, updated_at", (9, 10)),
            ("listing_revisions", "listing_id, revision, basic, card, created_at", (4,)),
            ("listing_facets", "facet, slug, listing_id", ()),
        ]  # fmt: skip
        for table, columns, times in tables:
            cursor = source.execute(f"SELECT {columns} FROM {table}")  # noqa: S608
            total = 0
            while chunk := cursor.fetchmany(10_000):
                records = [
                    tuple(_pg_time(v) if i in times else v for i, v in enumerate(row))
                    for row in chunk
                ]
                await connection.copy_records_to_table(
                    table, records=records, columns=[c.strip() for c in columns.split(",")]
                )
                total += len(records)
            log(f"postgres: {table}: {total:,} rows copied")
        # tsvector has no binary COPY codec in asyncpg: stage the literals as text, then cast
        # them as the service does (CAST(:document AS TSVECTOR)).
        await connection.execute("CREATE TEMP TABLE search_stage (listing_id text, document text)")
        with cache.pg_documents.open() as documents:
            batch: list[tuple[str, str]] = []
            for line in documents:
                batch.append(tuple(json.loads(line)))
                if len(batch) == 10_000:
                    await connection.copy_records_to_table("search_stage", records=batch)
                    batch = []
            if batch:
                await connection.copy_records_to_table("search_stage", records=batch)
        await connection.execute(
            "INSERT INTO listing_search (listing_id, document) "
            "SELECT listing_id, document::tsvector FROM search_stage"
        )
        await connection.execute("DROP TABLE search_stage")
        log(f"postgres: listing_search filled; {len(restore)} keys and indexes rebuilt")
        for ddl in restore:
            await connection.execute(ddl)
        await connection.execute("VACUUM ANALYZE")
    finally:
        source.close()
        await connection.close()


# --- a look at the shelf ----------------------------------------------------------------------


def describe(cache: ShelfCache) -> dict[str, object]:
    """A few distribution figures of the cached shelf (for the report)."""
    with contextlib.closing(sqlite3.connect(f"file:{cache.sqlite}?mode=ro", uri=True)) as db:

        def one(sql: str, *args: object) -> int:
            return int(db.execute(sql, args).fetchone()[0])

        listings = one("SELECT count(*) FROM listings")
        facets = Counter(
            dict(db.execute("SELECT facet, count(*) FROM listing_facets GROUP BY facet"))
        )
        return {
            "listings": listings,
            "published": one("SELECT count(*) FROM listings WHERE state = 2"),
            "revisions": one("SELECT count(*) FROM listing_revisions"),
            "facet_rows": sum(facets.values()),
            "by_kind": dict(db.execute("SELECT kind, count(*) FROM listings GROUP BY kind")),
            "by_tier": dict(
                db.execute("SELECT access_tier, count(*) FROM listings GROUP BY access_tier")
            ),
            "top_facets": facets.most_common(12),
            "database_mib": math.ceil(cache.sqlite.stat().st_size / 2**20),
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--listings", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args(argv)
    cache = cached_sqlite_shelf(args.listings, args.seed)
    print(cache.directory)
    print(json.dumps(describe(cache), indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
