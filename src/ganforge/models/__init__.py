"""Model architectures, registered by name. Importing this package registers them all."""

from ganforge.models import dcgan, dcgan_mnist, dcgan_oasis, mlp_gan  # noqa: F401  (registration side effect)
from ganforge.models.registry import (ARCHITECTURES, Architecture, build_models, count_parameters,
                                      get_architecture, register)

__all__ = ["ARCHITECTURES", "Architecture", "build_models", "count_parameters", "get_architecture", "register"]
