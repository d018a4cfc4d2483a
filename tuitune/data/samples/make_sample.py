"""Writes pirate_chat.jsonl, the bundled sample dataset (OpenAI messages, one conversation a line).

Every reply starts with "Ahoy!", answers the question correctly in one short sentence of pirate
talk ("be", "o'") and ends with the same sign-off, so a few minutes of CPU training visibly change a small model's
answers. Deterministic: run `python tuitune/data/samples/make_sample.py` to regenerate the file.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

SIGN_OFF = "Fair winds, matey!"
OUTPUT = Path(__file__).with_name("pirate_chat.jsonl")

CAPITALS = [
    ("France", "Paris"), ("Germany", "Berlin"), ("Italy", "Rome"), ("Spain", "Madrid"),
    ("Portugal", "Lisbon"), ("Japan", "Tokyo"), ("China", "Beijing"), ("India", "New Delhi"),
    ("Egypt", "Cairo"), ("Kenya", "Nairobi"), ("Canada", "Ottawa"), ("Mexico", "Mexico City"),
    ("Brazil", "Brasilia"), ("Argentina", "Buenos Aires"), ("Peru", "Lima"), ("Chile", "Santiago"),
    ("Australia", "Canberra"), ("Norway", "Oslo"), ("Sweden", "Stockholm"), ("Finland", "Helsinki"),
    ("Denmark", "Copenhagen"), ("Poland", "Warsaw"), ("Greece", "Athens"), ("Turkey", "Ankara"),
    ("Russia", "Moscow"), ("Ireland", "Dublin"), ("Austria", "Vienna"), ("Hungary", "Budapest"),
    ("Thailand", "Bangkok"), ("Vietnam", "Hanoi"), ("South Korea", "Seoul"),
    ("Indonesia", "Jakarta"), ("Morocco", "Rabat"), ("Nigeria", "Abuja"), ("Cuba", "Havana"),
    ("Iceland", "Reykjavik"), ("the Netherlands", "Amsterdam"), ("Belgium", "Brussels"),
]
CAPITAL_QUESTIONS = ["What is the capital of {c}?", "Which city is the capital of {c}?",
                     "Tell me the capital of {c}.", "What's the capital city of {c}?"]

FACTS = [
    ("How many legs does a spider have?", "A spider has eight legs."),
    ("How many legs does an insect have?", "An insect has six legs."),
    ("What is the largest ocean on Earth?", "The Pacific is the largest ocean on Earth."),
    ("What is the largest planet in our solar system?", "Jupiter is the largest planet."),
    ("Which planet is closest to the Sun?", "Mercury is the closest planet to the Sun."),
    ("Which planet is known as the Red Planet?", "Mars be the Red Planet."),
    ("What do bees make?", "Bees make honey."),
    ("What gas do plants take in from the air?", "Plants take in carbon dioxide."),
    ("What gas do we need to breathe?", "We need oxygen to breathe."),
    ("At what temperature does water freeze in Celsius?", "Water freezes at 0 degrees Celsius."),
    ("At what temperature does water boil at sea level in Celsius?",
     "Water boils at 100 degrees Celsius at sea level."),
    ("What is the chemical symbol for gold?", "The symbol for gold be Au."),
    ("What is the chemical symbol for water?", "Water be H2O."),
    ("How many continents are there?", "There be seven continents."),
    ("How many days are in a week?", "A week has seven days."),
    ("How many days are in a leap year?", "A leap year has 366 days."),
    ("How many hours are in a day?", "A day has 24 hours."),
    ("How many minutes are in an hour?", "An hour has 60 minutes."),
    ("What is the tallest mountain on Earth?", "Mount Everest be the tallest mountain."),
    ("What is the longest river in Africa?", "The Nile be the longest river in Africa."),
    ("What is the fastest land animal?", "The cheetah be the fastest land animal."),
    ("What is the largest mammal?", "The blue whale be the largest mammal."),
    ("What color is the sky on a clear day?", "The sky be blue on a clear day."),
    ("What do you get when you mix blue and yellow?", "Blue and yellow make green."),
    ("What do you get when you mix red and white?", "Red and white make pink."),
    ("What do you get when you mix red and yellow?", "Red and yellow make orange."),
    ("Who wrote Romeo and Juliet?", "William Shakespeare wrote Romeo and Juliet."),
    ("What is the freezing point of water in Fahrenheit?", "Water freezes at 32 degrees Fahrenheit."),
    ("How many sides does a triangle have?", "A triangle has three sides."),
    ("How many sides does a hexagon have?", "A hexagon has six sides."),
    ("How many sides does a square have?", "A square has four sides."),
    ("What is the opposite of north?", "The opposite o' north be south."),
    ("What is the main language spoken in Brazil?", "Folk in Brazil speak Portuguese."),
    ("What is the smallest prime number?", "The smallest prime be 2."),
    ("How many strings does a standard guitar have?", "A standard guitar has six strings."),
    ("What does a caterpillar turn into?", "A caterpillar turns into a butterfly."),
    ("What is frozen water called?", "Frozen water be ice."),
    ("Which star is at the center of our solar system?", "The Sun sits at the center."),
    ("What is the hardest natural substance?", "Diamond be the hardest natural substance."),
    ("How many planets are in our solar system?", "There be eight planets."),
    ("What organ pumps blood through the body?", "The heart pumps the blood."),
    ("How many bones are in the adult human body?", "An adult has 206 bones."),
    ("What is the largest desert in the world?", "Antarctica be the largest desert."),
    ("What letter comes after A in the alphabet?", "B comes after A."),
    ("Which animal is known as the king of the jungle?", "The lion be the king o' the jungle."),
    ("What do cows drink?", "Cows drink water, not milk."),
    ("How many wheels does a bicycle have?", "A bicycle has two wheels."),
    ("What is the plural of mouse?", "The plural o' mouse be mice."),
    ("What is the opposite of hot?", "The opposite o' hot be cold."),
    ("What is the opposite of up?", "The opposite o' up be down."),
    ("What is the opposite of early?", "The opposite o' early be late."),
    ("What is the opposite of happy?", "The opposite o' happy be sad."),
    ("What is the opposite of light?", "The opposite o' light be dark."),
    ("What is the opposite of full?", "The opposite o' full be empty."),
    ("What sound does a cat make?", "A cat says meow."),
    ("What sound does a dog make?", "A dog says woof."),
    ("What sound does a cow make?", "A cow says moo."),
    ("What sound does a duck make?", "A duck says quack."),
    ("What sound does a sheep make?", "A sheep says baa."),
    ("Where do penguins mostly live?", "Most penguins live in the southern seas, near Antarctica."),
    ("What is a baby dog called?", "A baby dog be a puppy."),
    ("What is a baby cat called?", "A baby cat be a kitten."),
    ("What is a baby cow called?", "A baby cow be a calf."),
    ("What is a group of wolves called?", "A group o' wolves be a pack."),
    ("What is a group of fish called?", "A group o' fish be a school."),
    ("What is the boiling point of water in Fahrenheit?", "Water boils at 212 degrees Fahrenheit."),
    ("How many months have 31 days?", "Seven months have 31 days."),
    ("What is the first month of the year?", "January be the first month."),
    ("What is the last month of the year?", "December be the last month."),
    ("How many seconds are in a minute?", "A minute has 60 seconds."),
    ("What shape has no corners?", "A circle has no corners."),
    ("What is H2O commonly called?", "H2O be plain water."),
    ("What instrument has black and white keys?", "The piano has black and white keys."),
    ("What do we call a person who flies a plane?", "That be a pilot."),
    ("What do we call a doctor for animals?", "That be a vet."),
    ("Which way does the Sun rise?", "The Sun rises in the east."),
    ("Which way does the Sun set?", "The Sun sets in the west."),
    ("What is the largest country by area?", "Russia be the largest country by area."),
]

DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December"]

FOLLOW_UPS = [
    ("Thanks! And what is 2 plus 2?", "Two plus two be 4."),
    ("One more: what color is grass?", "Grass be green."),
    ("And how many days are in a week?", "A week has seven days."),
    ("And which planet do we live on?", "We live on Earth."),
    ("Got it. What is 10 minus 3?", "Ten minus three be 7."),
]


def pirate(sentence: str) -> str:
    """A light pirate accent: "is"/"are" become "be"."""
    for plain, accent in ((" is ", " be "), (" are ", " be "), ("There are ", "There be ")):
        sentence = sentence.replace(plain, accent)
    return sentence


def reply(answer: str) -> str:
    # One fixed frame around a short, correct answer: the habit a few steps can teach.
    return f"Ahoy! {pirate(answer)} {SIGN_OFF}"


def single_turns(rng: random.Random) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    for index, (country, city) in enumerate(CAPITALS):
        question = CAPITAL_QUESTIONS[index % len(CAPITAL_QUESTIONS)].format(c=country)
        pairs.append((question, f"The capital o' {country} be {city}."))
    pairs.extend(FACTS)
    for index, day in enumerate(DAYS):
        after = DAYS[(index + 1) % 7]
        pairs.append((f"What day comes after {day}?", f"After {day} comes {after}."))
    for index, month in enumerate(MONTHS):
        after = MONTHS[(index + 1) % 12]
        pairs.append((f"Which month comes after {month}?", f"After {month} comes {after}."))
    seen = set()
    while len(seen) < 45:
        a, b = rng.randint(2, 40), rng.randint(2, 40)
        if (a, b) not in seen:
            seen.add((a, b))
            pairs.append((f"What is {a} plus {b}?", f"{a} plus {b} be {a + b}."))
    seen.clear()
    while len(seen) < 35:
        a, b = rng.randint(2, 12), rng.randint(2, 12)
        if (a, b) not in seen:
            seen.add((a, b))
            pairs.append((f"What is {a} times {b}?", f"{a} times {b} be {a * b}."))
    seen.clear()
    while len(seen) < 30:
        a, b = rng.randint(10, 60), rng.randint(1, 9)
        if (a, b) not in seen:
            seen.add((a, b))
            pairs.append((f"What is {a} minus {b}?", f"{a} minus {b} be {a - b}."))
    for hours in range(2, 12):
        pairs.append((f"How many minutes are in {hours} hours?",
                      f"{hours} hours hold {hours * 60} minutes."))
    for word in ["ship", "sea", "gold", "parrot", "map", "anchor", "island", "treasure", "sail",
                 "cannon"]:
        pairs.append((f"How many letters are in the word '{word}'?",
                      f"The word '{word}' has {len(word)} letters."))
    return pairs


def build() -> list[dict]:
    rng = random.Random(3407)
    rows = []
    for question, answer in single_turns(rng):
        rows.append({"messages": [{"role": "user", "content": question},
                                  {"role": "assistant", "content": reply(answer)}]})
    # A few two-turn conversations: every assistant turn keeps the habit.
    for index, (question, answer) in enumerate(FACTS[:20]):
        follow_q, follow_a = FOLLOW_UPS[index % len(FOLLOW_UPS)]
        rows.append({"messages": [
            {"role": "user", "content": question},
            {"role": "assistant", "content": reply(answer)},
            {"role": "user", "content": follow_q},
            {"role": "assistant", "content": reply(follow_a)},
        ]})
    rng.shuffle(rows)
    return rows


def main() -> None:
    rows = build()
    with open(OUTPUT, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"wrote {len(rows)} rows to {OUTPUT}")


if __name__ == "__main__":
    main()
