"""Common English nicknames and the given names they stand for (lower case, no accents).

A nickname may stand for several names (``alex``: alexander, alexandra, alexis); matching
treats two first names as possibly the same when their forms meet (``first_name_forms``).
"""

from __future__ import annotations

_GIVEN_NAMES: dict[str, tuple[str, ...]] = {
    "abigail": ("abby", "abbie", "gail"),
    "albert": ("al", "bert", "bertie"),
    "alexander": ("alex", "alec", "sandy", "xander", "lex", "sasha"),
    "alexandra": ("alex", "lexi", "sandra", "sandy", "alexa", "sasha"),
    "alfred": ("al", "alf", "fred", "freddie"),
    "allison": ("ally", "allie"),
    "andrew": ("andy", "drew"),
    "angela": ("angie",),
    "anthony": ("tony",),
    "arthur": ("art", "artie"),
    "barbara": ("barb", "barbie", "babs"),
    "benjamin": ("ben", "benny", "benji"),
    "bernard": ("bernie",),
    "beverly": ("bev",),
    "bradley": ("brad",),
    "catherine": ("cathy", "cat", "kate", "katie", "cate"),
    "katherine": ("kathy", "kate", "katie", "kat", "kay", "kitty"),
    "charles": ("charlie", "chuck", "chas", "chaz"),
    "charlotte": ("charlie", "lottie", "lotte"),
    "christina": ("chris", "tina", "christy"),
    "christine": ("chris", "tina", "chrissy"),
    "christopher": ("chris", "kit", "topher"),
    "cynthia": ("cindy",),
    "daniel": ("dan", "danny"),
    "david": ("dave", "davy", "davie"),
    "deborah": ("deb", "debbie", "debby"),
    "dennis": ("denny",),
    "donald": ("don", "donny"),
    "dorothy": ("dot", "dottie", "dolly"),
    "douglas": ("doug",),
    "edward": ("ed", "eddie", "ned", "ted", "teddy"),
    "elizabeth": ("liz", "beth", "betty", "lizzie", "eliza", "libby", "betsy", "liza"),
    "emily": ("em", "emmy", "millie"),
    "eugene": ("gene",),
    "frances": ("fran", "frannie"),
    "francis": ("frank", "fran"),
    "frederick": ("fred", "freddie", "freddy"),
    "gabriel": ("gabe",),
    "gerald": ("gerry", "jerry"),
    "gregory": ("greg",),
    "harold": ("hal", "harry"),
    "henry": ("hank", "harry", "hal"),
    "isabella": ("bella", "izzy", "isa"),
    "jacob": ("jake", "jay"),
    "james": ("jim", "jimmy", "jamie", "jem"),
    "janet": ("jan",),
    "jeffrey": ("jeff",),
    "jennifer": ("jen", "jenny", "jenn"),
    "jessica": ("jess", "jessie"),
    "john": ("jack", "johnny", "jon"),
    "jonathan": ("jon", "jonny", "nathan"),
    "joseph": ("joe", "joey", "jos"),
    "joshua": ("josh",),
    "judith": ("judy", "jude"),
    "kenneth": ("ken", "kenny"),
    "kimberly": ("kim", "kimmy"),
    "lawrence": ("larry", "laurie"),
    "leonard": ("leo", "len", "lenny"),
    "margaret": ("maggie", "meg", "peggy", "marge", "margie", "greta", "madge"),
    "matthew": ("matt", "matty"),
    "michael": ("mike", "mikey", "mick", "mickey"),
    "nicholas": ("nick", "nicky", "nico"),
    "nicole": ("nicki", "nikki", "nic"),
    "patricia": ("pat", "patty", "tricia", "trish"),
    "patrick": ("pat", "paddy", "rick"),
    "pamela": ("pam",),
    "peter": ("pete",),
    "philip": ("phil", "pip"),
    "phillip": ("phil",),
    "rebecca": ("becky", "becca", "bex"),
    "richard": ("rick", "dick", "rich", "richie", "ricky"),
    "robert": ("bob", "bobby", "rob", "robbie", "bert"),
    "ronald": ("ron", "ronnie"),
    "samantha": ("sam", "sammy"),
    "samuel": ("sam", "sammy"),
    "sarah": ("sally", "sadie"),
    "stephanie": ("steph", "stevie"),
    "stephen": ("steve", "stevie"),
    "steven": ("steve", "stevie"),
    "susan": ("sue", "susie", "suzy"),
    "theodore": ("ted", "teddy", "theo"),
    "thomas": ("tom", "tommy"),
    "timothy": ("tim", "timmy"),
    "victoria": ("vicky", "tori", "vic"),
    "vincent": ("vince", "vinny"),
    "walter": ("walt", "wally"),
    "william": ("bill", "billy", "will", "willie", "liam"),
    "zachary": ("zach", "zack"),
}


def _nicknames() -> dict[str, tuple[str, ...]]:
    table: dict[str, list[str]] = {}
    for given, nicknames in _GIVEN_NAMES.items():
        for nickname in nicknames:
            table.setdefault(nickname, []).append(given)
    return {nickname: tuple(sorted(names)) for nickname, names in table.items()}


# Nickname -> the given names it may stand for.
NICKNAMES: dict[str, tuple[str, ...]] = _nicknames()
# Given name -> its common nicknames.
NICKNAMES_OF: dict[str, tuple[str, ...]] = dict(_GIVEN_NAMES)
