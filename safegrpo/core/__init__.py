from safegrpo.core.registry import Registry

__all__ = ["Registry"]
