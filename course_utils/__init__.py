"""course_utils: the small support package shared by the course notebooks.

Only what two or more notebooks (or the homework grader) need lives here.
Every function fits on one screen; read it, it is part of the course.
"""

__version__ = "0.1.0"
