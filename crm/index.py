"""Index the CRM catalog into Chroma: product facts, reviews and brand tone.

    python -m personagraph.crm.index [--force]          (also: personagraph crm --build_index)

`personagraph prepare` builds it for the shipped catalog; an imported catalog is built on its first
use. The vectors are kept on disk per text set (`embed_passages_cached`), so the same catalog indexed
into another home or Chroma server takes seconds, not the 40 s of embedding 948 texts. Each
collection carries the catalog's fingerprint; a collection whose fingerprint differs from the data
files is rebuilt, so edits to data/crm are picked up and an unchanged catalog is never re-embedded.
"""

from __future__ import annotations

import argparse
import json
import threading
from dataclasses import dataclass

from chromadb.api import ClientAPI
from chromadb.api.models.Collection import Collection

from personagraph.crm.catalog import Catalog, load_catalog, product_fact_texts
from personagraph.memory.vectors import Document, chroma_client, get_collection, index_documents

PRODUCTS = "crm_products"
REVIEWS = "crm_reviews"
TONE = "crm_tone"

INDEX_VERSION = "1"  # bump when the indexed texts change (product_fact_texts, tone documents)

_lock = threading.Lock()


@dataclass
class CrmIndex:
    products: Collection
    reviews: Collection
    tone: Collection


def product_documents(catalog: Catalog) -> list[Document]:
    docs = []
    for product in catalog.products.values():
        for kind, text in product_fact_texts(catalog, product).items():
            docs.append(Document(text=text, metadata={
                "source": f"product:{product.id}#{kind}", "product_id": product.id,
                "brand_id": product.brand_id, "fact": kind,
            }))  # fmt: skip
    return docs


def review_documents(catalog: Catalog) -> list[Document]:
    return [
        Document(text=r.text, metadata={"source": f"review:{r.id}", "product_id": r.product_id,
                                         "brand_id": r.brand_id, "rating": r.rating, "skin_type": r.skin_type})
        for r in catalog.reviews
    ]  # fmt: skip


def tone_documents(catalog: Catalog) -> list[Document]:
    docs = []
    for brand in catalog.brands.values():
        meta = {"brand_id": brand.id}
        docs.append(Document(text=f"{brand.name}: {brand.introduction}", metadata={**meta, "source": f"tone:{brand.id}#intro", "part": "intro"}))  # fmt: skip
        for i, copy in enumerate(brand.copy_examples):
            docs.append(Document(text=copy, metadata={**meta, "source": f"tone:{brand.id}#copy{i}", "part": "copy"}))  # fmt: skip
    return docs


def _build(client: ClientAPI, name: str, documents: list[Document], stamp: str, force: bool) -> Collection:
    if name in {c.name for c in client.list_collections()}:
        collection = get_collection(client, name)
        if not force and (collection.metadata or {}).get("fingerprint") == stamp:
            return collection
        client.delete_collection(name)
    collection = get_collection(client, name)
    index_documents(collection, documents, cache_embeddings=True)
    collection.modify(metadata={"fingerprint": stamp})  # stamped last: an interrupted build is redone
    return collection


def ensure_crm_index(client: ClientAPI, catalog: Catalog | None = None, *, force: bool = False) -> CrmIndex:
    """The three CRM collections, built or rebuilt when the catalog changed (or when forced)."""
    catalog = catalog or load_catalog()
    with _lock:
        stamp = f"{catalog.fingerprint}-v{INDEX_VERSION}"
        # An imported catalog has its own collections, so catalogs live side by side.
        suffix = f"__{catalog.name}" if catalog.name else ""
        return CrmIndex(
            products=_build(client, PRODUCTS + suffix, product_documents(catalog), stamp, force),
            reviews=_build(client, REVIEWS + suffix, review_documents(catalog), stamp, force),
            tone=_build(client, TONE + suffix, tone_documents(catalog), stamp, force),
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Index the CRM catalog into Chroma.")
    parser.add_argument("--force", action="store_true", help="rebuild even when the catalog is unchanged")
    args = parser.parse_args(argv)
    index = ensure_crm_index(chroma_client(), force=args.force)
    print(
        json.dumps(
            {PRODUCTS: index.products.count(), REVIEWS: index.reviews.count(), TONE: index.tone.count()}
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
