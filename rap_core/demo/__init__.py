"""The embedded demo: the easy-VQA model rap ships (recipe.py: its recipe and where its files
are; model.py: training it by the recipe and its accuracy; training.py: the training loops),
the random tiny model builder, easy-VQA material, and `rap validate`'s planted pools."""
