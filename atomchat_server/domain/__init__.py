"""The rules of the product: who may do what, and what each action changes."""
