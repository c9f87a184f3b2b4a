"""The built-in questions of the traffic generator: varied lengths and topics, so token counts vary."""

from __future__ import annotations

import random

CITIES = (
    "Pisa",
    "Lucca",
    "Florence",
    "Siena",
    "Livorno",
    "Arezzo",
    "Milan",
    "Bergamo",
    "Parma",
    "Lisbon",
    "Kyoto",
    "Valparaíso",
    "Edinburgh",
    "Montreal",
    "Cape Town",
    "Hanoi",
)

CITY_TEMPLATES = (
    "Tell me about {city}.",
    "Could you tell me more about the history of {city}, and about famous people who were born there?",
    "I'd like to make a tour of {city}. Which nearby towns or historical places are worth a visit?",
    "What is the best season to visit {city}, and what should I pack?",
    "Which local dishes should I try in {city}?",
)

QUESTIONS = (
    "Explain the difference between a process and a thread in two sentences.",
    "What is a token in a large language model, and why do providers bill by tokens?",
    "Write a haiku about load balancing.",
    "Summarise the causes of the French Revolution in five bullet points.",
    "How does HTTP/2 multiplexing differ from HTTP/1.1 pipelining?",
    "Give me three ideas for a team-building activity that works remotely.",
    "What is the capital of Australia, and why is it not Sydney?",
    "Explain Prometheus histograms to someone who knows only averages.",
    "Translate 'the early bird catches the worm' into Italian and explain the idiom.",
    "What are the trade-offs between optimistic and pessimistic locking?",
    "Suggest a name for a coffee shop run by software engineers.",
    "Why is the sky blue?",
    "Describe a noisy-neighbour problem in a multitenant system and two ways to mitigate it.",
    "Write a short SQL query that returns the ten customers with the highest total orders.",
    "What should I check first when a Kubernetes pod is stuck in CrashLoopBackOff?",
    "Compare round-robin and least-connections load balancing.",
    "List four tips for writing a good commit message.",
    "How do vaccines train the immune system?",
    "What is the difference between weather and climate?",
    "Recommend a reading order for someone new to distributed systems.",
)


def random_question(rng: random.Random) -> str:
    """A built-in question: about half about a city (like the C# sample's script), half general."""
    if rng.random() < 0.5:
        return rng.choice(CITY_TEMPLATES).format(city=rng.choice(CITIES))
    return rng.choice(QUESTIONS)
