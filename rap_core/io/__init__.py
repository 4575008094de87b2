"""What comes in and goes out: pools read and checked (readers, layouts, pool files and
images), selections written for trainers (export, export_check), and the rules for any file
a user names (outputs)."""
