"""The shipped caption corpus for text-bridge training: a few thousand sentences generated from
templates over scenes, places, weather, light, people, faces and moods (deterministic, no download).

The sentences read like the captions BLIP writes and the descriptions people give of a photo's
mood, so a head trained on them covers the vocabulary the query path meets.
"""

from __future__ import annotations

import itertools
import random

SIZE = 4000

PEOPLE = ("a woman", "a man", "a young girl", "a little boy", "an old man", "an elderly woman", "a couple",
          "two friends", "a group of people", "a family", "a child", "a crowd", "a musician", "a dancer",
          "a runner", "a student", "a bride and groom", "a mother and her baby")
FACES = ("smiling", "laughing", "crying", "looking sad", "looking angry", "looking surprised", "deep in thought",
         "with a calm face", "looking tired", "looking scared", "grinning widely", "with tears in her eyes",
         "frowning", "looking bored", "looking proud", "shouting")
ACTIONS = ("walking", "sitting", "standing", "dancing", "running", "reading a book", "playing guitar",
           "holding an umbrella", "drinking coffee", "looking out of a window", "riding a bicycle",
           "waiting for a bus", "hugging", "singing", "sleeping", "cooking dinner")
PLACES = ("on a city street", "on the beach", "in a forest", "in a small cafe", "at a concert", "in a park",
          "on a mountain top", "in an empty room", "at a train station", "by a lake", "in a crowded market",
          "on a rooftop", "in a snowy village", "in a desert", "at a party", "in a library", "on a bridge",
          "in a field of flowers", "in a hospital corridor", "at the office", "in a church", "at a stadium")
SCENES = ("a city skyline", "an empty road", "a quiet beach", "a dark forest", "a field of sunflowers",
          "a snowy mountain", "a busy street", "a calm lake", "an old house", "a neon-lit alley", "a harbour",
          "a wheat field", "a rainy window", "a night sky full of stars", "a waterfall", "a desert highway",
          "a crowded dance floor", "a birthday cake with candles", "a cemetery", "a garden in bloom",
          "ocean waves", "a lighthouse", "a playground", "an abandoned factory")
WEATHER = ("in the rain", "in heavy snow", "under a clear blue sky", "in thick fog", "during a storm",
           "on a windy day", "under grey clouds", "in the summer heat", "on a frosty morning", "after the rain")
LIGHT = ("at sunset", "at sunrise", "at night", "in golden light", "in soft morning light", "under neon lights",
         "in candlelight", "in harsh midday sun", "at dusk", "in the moonlight", "in black and white",
         "in warm colours", "in cold blue tones", "in dim light")
MOODS = ("happy", "sad", "calm", "peaceful", "romantic", "lonely", "energetic", "nostalgic", "dreamy",
         "melancholic", "cheerful", "tense", "dark", "festive", "hopeful", "angry", "gloomy", "relaxing",
         "exciting", "mysterious", "warm", "cozy", "epic", "playful", "serene", "bittersweet")
FEELINGS = ("a {mood} mood", "a {mood} feeling", "a {mood} atmosphere", "{mood} vibes", "a {mood} moment")

TEMPLATES = (
    "{person} {action} {place} {weather}",
    "{person} {face} {place}",
    "a photo of {person} {face} {light}",
    "{person} {action} {place} {light}",
    "{scene} {weather}",
    "{scene} {light}",
    "a photo of {scene} {weather}, {feeling}",
    "{scene} {light}, {feeling}",
    "a portrait of {person} {face}",
    "close-up of a face {face}, {feeling}",
    "{person} {action} {weather}, {feeling}",
    "{feeling}: {person} {place} {light}",
)


def caption_corpus(size: int = SIZE, seed: int = 0) -> list[str]:
    """``size`` distinct generated sentences; the same arguments always give the same list."""
    rng = random.Random(seed)
    sentences: dict[str, None] = {}
    for template in itertools.cycle(TEMPLATES):
        if len(sentences) >= size:
            break
        mood = rng.choice(MOODS)
        sentence = template.format(
            person=rng.choice(PEOPLE), face=rng.choice(FACES), action=rng.choice(ACTIONS),
            place=rng.choice(PLACES), scene=rng.choice(SCENES), weather=rng.choice(WEATHER),
            light=rng.choice(LIGHT), feeling=rng.choice(FEELINGS).format(mood=mood))
        sentences[sentence[0].upper() + sentence[1:]] = None
    return list(sentences)
