"""MkDocs hook: fill the recipe page's list of shipped recipes from the recipe files.

``<!-- shipped-recipes -->`` in a page is replaced by :func:`keras_lottery.config.catalog.markdown`
(TensorFlow-free), so a new recipe file appears in the documentation without editing it.
"""

import sys
from pathlib import Path

MARKER = "<!-- shipped-recipes -->"
ROOT = Path(__file__).resolve().parents[1]


def on_page_markdown(markdown, page, config, files):
    if MARKER not in markdown:
        return markdown
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from keras_lottery.config import catalog

    return markdown.replace(MARKER, catalog.markdown())
