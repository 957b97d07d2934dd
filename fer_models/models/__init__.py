"""Model zoo: importing this package registers every model (imports torch)."""

from fer_models.models import mini_xception, mobilenet_v2, resnet, vit  # noqa: F401  (register)
from fer_models.models._registry import check_model_kwargs, create_model, is_model, list_models, register_model

__all__ = ["check_model_kwargs", "create_model", "is_model", "list_models", "register_model"]
