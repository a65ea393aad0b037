from __future__ import annotations

from pathlib import Path

from setuptools import find_packages, setup


HERE = Path(__file__).parent
VERSION = "0.1.0.dev0"

# torch is deliberately unpinned here: install `torch==2.13.0` (CPU) first, as the Makefile does, so that pip
# does not pull a CUDA build with several GB of dependencies.
INSTALL_REQUIRES = [
    "torch>=2.4",
    "transformers>=5.0,<6",
    "trl>=1.0",
    "peft>=0.17",
    "datasets>=3.0",
    "evaluate>=0.4.3",
    "accelerate>=1.0",
    "faiss-cpu>=1.8",
    "huggingface-hub>=1.0",
    "safetensors>=0.4",
    "gguf>=0.10",
    "filelock>=3.12",
    "numpy>=1.26",
    "tqdm>=4.66",
    "jinja2>=3.1",
    "matplotlib>=3.8",
    "jsonnet>=0.20",
]

EXTRAS_REQUIRE = {
    "dev": ["pytest>=8", "pytest-timeout>=2.3", "ruff>=0.6", "pytrec-eval-terrier>=0.5"],
    "sentence-transformers": ["sentence-transformers>=3.0"],
}
EXTRAS_REQUIRE["all"] = sorted({dep for deps in EXTRAS_REQUIRE.values() for dep in deps})

setup(
    name="hf-latent",
    version=VERSION,
    description="Latent reasoning for retrieval and RAG on Hugging Face: LaSER and LatentRAG",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["hf_latent", "hf_latent.*"]),
    package_data={"hf_latent": ["py.typed", "data/*.json", "templates/*", "evaluation/metrics/*/*.py"]},
    include_package_data=True,
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
    entry_points={"console_scripts": ["hf-latent=hf_latent.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "License :: OSI Approved :: Apache Software License",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
