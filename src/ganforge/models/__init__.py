"""Model architectures, registered by name. Importing this package registers them all."""

from ganforge.models import (  # noqa: F401  (registers)
    dcgan,
    dcgan_mnist,
    dcgan_oasis,
    fastgan,
    mlp_gan,
    resnet,
)
from ganforge.models.registry import (
    ARCHITECTURES,
    Architecture,
    build_models,
    count_parameters,
    generator_skeleton,
    get_architecture,
    register,
)

__all__ = [
    "ARCHITECTURES",
    "Architecture",
    "build_models",
    "count_parameters",
    "generator_skeleton",
    "get_architecture",
    "register",
]
