"""The plant itself: layout graph, material, buffers, PackML state model, random streams,
event recorder and ISO 22400 KPIs. Imports nothing from the layers above."""
