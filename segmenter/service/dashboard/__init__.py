"""The dashboard for people: its pages (``pages.blueprint``), charts drawn off Label Studio's threads
(``chart_worker``), task views reduced for drawing and tasks read for a page."""
