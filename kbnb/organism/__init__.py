"""tinyworld and its model organism: a seeded fictitious world with an exactly known
knowledge boundary (``world``) and a small Llama trained on it, cached on disk (``model``).

The organism's public API is re-exported here: ``kbnb.organism.build_organism``,
``OrganismConfig``, ``parse_organism_name``, ``world_for``, ...
"""
from kbnb.organism.model import (  # noqa: F401
                                 CHAT_TEMPLATE,
                                 ORGANISM_NAMES,
                                 OrganismConfig,
                                 build_organism,
                                 cache_dir,
                                 organism_path,
                                 parse_organism_name,
                                 retain_excluded,
                                 retain_organism_name,
                                 train_organism,
                                 training_log,
                                 weights_digest,
                                 world_for,
                                 world_of,
)
