"""The names and texts the studio draws from: people, projects, assets, shot descriptions and tags,
and what versions, notes, replies and time logs say."""

from __future__ import annotations

FIRST_NAMES = (
    "Alex", "Amara", "Ben", "Carmen", "Chen", "Dana", "Diego", "Elena", "Emeka", "Farah", "Felix", "Grace", "Hana",
    "Hugo", "Ines", "Isaac", "Jonas", "Julia", "Kai", "Kenji", "Lea", "Liam", "Lucia", "Malik", "Maya", "Mateo",
    "Nadia", "Nina", "Omar", "Oscar", "Priya", "Quentin", "Rosa", "Ravi", "Sara", "Sofia", "Tariq", "Theo", "Uma",
    "Victor", "Wen", "Yara", "Yusuf", "Zoe", "Noah",
)
LAST_NAMES = (
    "Abara", "Becker", "Castillo", "Dubois", "Eriksen", "Fischer", "Garcia", "Haddad", "Ito", "Jensen", "Kowalski",
    "Laurent", "Moreau", "Nakamura", "Okafor", "Petrov", "Quinn", "Rossi", "Sato", "Schmidt", "Tanaka", "Usman",
    "Varga", "Walsh", "Xu", "Yilmaz", "Zhang", "Novak", "Silva", "Kim", "Park", "Costa", "Murphy", "Olsen", "Patel",
    "Reyes", "Hughes", "Lindqvist", "Mendes", "Brennan", "Ahmed", "Horvat", "Iyer", "Keller", "Lopez",
)
PROJECT_NAMES = (
    "Aurora", "Blackwater", "Copper Sky", "Driftwood", "Ember Falls", "Frostbite", "Glass Harbor", "Hollow Pines",
    "Iron Tide", "Juniper Road", "Kestrel", "Lantern Bay", "Moonwake", "Northern Lights", "Old Orchard",
    "Paper Tigers", "Quiet Storm", "Red Meridian", "Salt and Stone", "Tin Soldiers",
)
PROJECT_TYPES = ("Feature Film", "Feature Film", "Short Film", "Commercial", "Effects", "Game Cinematic")
ASSET_NAMES = {
    "character": ("Mara", "Tobias", "CaptainReyes", "OldFisherman", "Crow", "Guard", "Wolf", "GhostGirl", "Inventor",
                  "Robot", "Queen", "Smuggler", "Child", "Villager"),
    "prop": ("Lantern", "Sword", "PocketWatch", "Map", "Compass", "Rope", "Crate", "Barrel", "LampPost", "Book",
             "Key", "Cup", "Radio", "Umbrella", "Rifle", "Bicycle", "Chest", "Anchor", "Telescope", "Chair"),
    "environment": ("Harbor", "ForestClearing", "Lighthouse", "MarketStreet", "Cave", "TrainStation", "Rooftops",
                    "ThroneRoom", "Workshop", "Beach"),
    "vehicle": ("FishingBoat", "SteamTrain", "Biplane", "Motorbike", "CargoTruck", "Airship", "Rowboat", "Tram"),
    "matte painting": ("Skyline", "MountainRange", "StormSky", "CityExtension", "Coastline"),
    "other": ("Element", "Setpiece", "Crowd", "Foliage", "Debris"),
}
ASSET_WEIGHTS = {"character": 3.0, "prop": 4.0, "environment": 2.0, "vehicle": 1.5, "matte painting": 1.0,
                 "other": 1.0}
FRAMINGS = ("Wide shot", "Medium shot", "Close-up", "Over-the-shoulder", "Tracking shot", "Aerial view", "Insert")
ACTIONS = ("running toward camera", "looking out to sea", "drawing the sword", "climbing the stairs",
           "arguing with the guard", "reacting to the explosion", "walking through the crowd", "hiding behind crates",
           "turning to camera", "reading the map")
SHOT_TAGS = ("hero", "fx-heavy", "client-fav", "stereo", "trailer", "reshoot")
VERSION_NOTES = ("First pass", "Blocking pass", "Addressed notes from dailies", "Timing tweaks", "Updated lighting",
                 "Fixed edge flicker", "New camera from layout", "Client notes addressed", "Final polish",
                 "Tech check fixes", "Higher res render", "Matchmove updated", "Wip for sup review")
NOTE_TEXTS = ("Can we push the rim light a bit more?", "Timing feels slow in the middle, tighten by 4 frames.",
              "Edges are chattering around the hair, please check the key.", "Looks great, approved.",
              "Match the grade to the previous shot.", "Smoke needs more detail at the base.",
              "Contact with the ground looks off on the landing.", "Client asks for a warmer sky.",
              "Please fix the intersection on the left hand.", "Too much motion blur on the fast move.",
              "Scale of the boat reads too small against the harbor.", "Needs a slate before it goes to client.")
REPLY_TEXTS = ("Will do.", "Addressed in the next version.", "Done, see the next version.",
               "Can we discuss in rounds?", "Good catch, fixing.", "Waiting on an updated layout for this one.",
               "Thanks!", "Agreed, pushing it further.")
TIME_LOG_TEXTS = ("Blocking", "Polish", "Notes", "Setup", "Renders", "Dailies", "Tech check", "Research", "Fixes")
