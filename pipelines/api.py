"""`reelhouse api`: recommendations over HTTP for applications and people, and a page at /.

An ASGI app (FastAPI, served by uvicorn) over one ServedModel in memory (served_model.py):
no JVM, no Spark on the request path. A watcher thread looks at the Delta versions of
model_runs, ratings_split and movie_stats every few seconds; when one moved (a run finished,
a build rewrote them) it loads the model whole, then swaps one reference, so every request
answers from the old model or the new one, never a mix (each handler takes the reference
once). A reload that fails leaves the old model serving and /health says why (503, "stale");
with no model at all, /health answers 503 and the process keeps trying.

Errors are JSON {"error": "one sentence"}: 404 for an unknown id in a path, 422 for a request
the model cannot take as written, 401 without the token, 503 with no model to serve.
"""

from __future__ import annotations

import gc
import hmac
import sys
import threading
import time
import traceback
from contextlib import asynccontextmanager
from importlib import resources
from typing import Annotated

import orjson
from fastapi import Body, FastAPI, Path, Query
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StrictInt
from starlette.exceptions import HTTPException as StarletteHTTPException

from pipelines import progress, served_model
from pipelines.errors import ReelhouseError, spark_message
from pipelines.served_model import BadRequest, NotFound, ServedModel, Unavailable
from pipelines.settings import Settings

MAX_N = 100  # list length one request may ask for
# What a reload follows: a new run, and a build's new ratings and movie statistics.
WATCHED = ("model_runs", "ratings_split", "movie_stats")
RETRY_SECONDS = 30.0  # a load that failed on unchanged tables is tried again this often


class JSON(Response):
    media_type = "application/json"

    def render(self, content) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)


def error(status: int, message: str, headers: dict | None = None,
          run_id: str | None = None) -> JSON:
    body = {"error": message} if run_id is None else {"error": message, "run_id": run_id}
    return JSON(body, status_code=status, headers=headers)


class ModelHolder:
    """The model being served, replaced whole when a new run finishes."""

    def __init__(self, settings: Settings, reload_seconds: float):
        self.settings = settings
        self.reload_seconds = reload_seconds
        self.model: ServedModel | None = None
        self.error: str | None = None  # why there is no model, or why the last reload failed
        self.checked_versions: tuple | None = None
        self._failed_versions: tuple | None = None
        self._failed_at = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def refresh(self) -> None:
        """Load the model again if a watched table moved since the last look: a finished run
        (model_runs), or a build that rewrote what users rated or the movies' statistics.
        Looking costs a read of three Delta logs; loading happens only on a change, and a
        load that failed is tried again when something changes or RETRY_SECONDS later."""
        try:
            versions = tuple(served_model.table_version(self.settings, table)
                             for table in WATCHED)
        except Exception as exc:  # the warehouse itself is unreadable: say so, keep serving
            self.error = f"the warehouse cannot be read: {spark_message(exc, 200)}"
            return
        if versions == self.checked_versions:
            self.error = None
            return
        if versions == self._failed_versions \
                and time.monotonic() - self._failed_at < RETRY_SECONDS:
            return
        try:
            model = served_model.load(self.settings, dict(zip(WATCHED, versions, strict=True)))
        except Exception as exc:
            self.error = str(exc) if isinstance(exc, ReelhouseError) else \
                f"loading the model failed: {type(exc).__name__}: {spark_message(exc, 200)}"
            self._failed_versions, self._failed_at = versions, time.monotonic()
            return
        self.model = model  # the swap: one reference, atomic for every reader
        # The model is hundreds of thousands of objects that live until the next reload:
        # out of the collector's sight, a full collection no longer walks them all (a
        # pause every few thousand requests). The old model is freed by reference count.
        gc.collect()
        gc.freeze()
        self.checked_versions, self.error, self._failed_versions = versions, None, None
        progress.say(f"serving run {model.run_id} (loaded in {model.loaded_seconds:.2f}s)")

    def start(self) -> None:
        def watch():
            while not self._stop.wait(self.reload_seconds):
                self.refresh()

        self._thread = threading.Thread(target=watch, name="model-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def current(self) -> ServedModel:
        model = self.model
        if model is None:
            raise Unavailable(self.error or "The model is still loading.")
        return model


# --- request and response shapes (for validation and the OpenAPI document) ------------------

class Rating(BaseModel):
    model_config = ConfigDict(extra="forbid")
    movie_id: StrictInt = Field(gt=0, description="a movie id from /movies")
    rating: float = Field(description="on the dataset's scale (see /health)")


class NewUser(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ratings: list[Rating] = Field(max_length=served_model.MAX_FOLD_IN_RATINGS,
                                  description="the new user's ratings, one per movie")
    n: StrictInt = Field(10, ge=1, le=MAX_N, description="how many recommendations")


class Movie(BaseModel):
    movie_id: int
    title: str
    year: int | None
    genres: list[str]
    num_ratings: int | None = Field(description="ratings in the warehouse")
    avg_rating: float | None
    bayesian_avg: float | None = Field(description="mean rating shrunk toward the overall mean")


class MovieDetail(Movie):
    run_id: str


class Reason(BaseModel):
    movie_id: int
    title: str
    rating: float


class Item(Movie):
    rank: int
    score: float = Field(description="the model's score (a count for most-rated picks, the "
                                     "cosine for similar movies)")
    source: str | None = Field(None, description="the list model, or 'most_rated'")
    because: Reason | None = Field(None, description="fold-in: the rated movie that adds most")


class ItemList(BaseModel):
    run_id: str
    source: str = Field(description="the list model, 'most_rated' (fallback) or 'fold_in'")
    items: list[Item]
    left_out: list[int] | None = Field(None, description="fold-in: rated movies the model "
                                                         "has no factors for")


class SearchResult(BaseModel):
    run_id: str
    items: list[Movie]


class SimilarMovies(BaseModel):
    run_id: str
    movie: Movie
    items: list[Item]


class Estimate(BaseModel):
    run_id: str
    user_id: int
    movie_id: int
    estimate: float
    source: str = Field(description="'rating_model', or 'baseline' where a side has no factors")


class Health(BaseModel):
    status: str = Field(description="'ok', 'stale' (serving, but the warehouse cannot give a "
                                    "newer run) or 'unavailable'")
    run_id: str | None = None
    list_model: str | None = None
    finished_at: str | None = None
    rating_scale: list[float] | None = None
    metrics: dict[str, float | None] | None = None
    movies: int | None = None
    users: int | None = None
    loaded_seconds: float | None = None
    error: str | None = None


class Error(BaseModel):
    error: str = Field(description="one sentence: what was wrong and what to do")
    run_id: str | None = None


ERRORS = {status: {"model": Error} for status in (401, 404, 422, 503)}


class BearerToken:
    """ASGI middleware: every path but the page, its files, /health and the docs wants
    `Authorization: Bearer <token>` (compared in constant time). Plain ASGI, not
    BaseHTTPMiddleware, which costs a task and a queue per request."""

    OPEN = {"/", "/page.js", "/page.css", "/health", "/openapi.json", "/docs", "/redoc",
            "/docs/oauth2-redirect"}

    def __init__(self, app, token: str):
        self.app, self.expected = app, token.encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"] not in self.OPEN:
            scheme, _, given = dict(scope["headers"]).get(b"authorization", b"").partition(b" ")
            if scheme.lower() != b"bearer" or not hmac.compare_digest(given.strip(),
                                                                     self.expected):
                refusal = error(401, "This API needs `Authorization: Bearer <token>` (the "
                                "token `reelhouse api` was started with).",
                                {"WWW-Authenticate": "Bearer"})
                await refusal(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _listing(model: ServedModel, items: list[dict], **extra) -> dict:
    for rank, item in enumerate(items, start=1):
        item["rank"] = rank
    return {"run_id": model.run_id, "items": items, **extra}


def create_app(settings: Settings, token: str | None = None,
               reload_seconds: float = 2.0, watch: bool = True) -> FastAPI:
    """The app over the warehouse in `settings`; with `token`, every endpoint but the page and
    its files wants `Authorization: Bearer <token>`."""
    holder = ModelHolder(settings, reload_seconds)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        holder.refresh()
        if holder.error:
            progress.say(f"no model yet: {holder.error}")
        if watch:
            holder.start()
        yield
        holder.stop()

    app = FastAPI(title="reelhouse", version="0.1.0", lifespan=lifespan,
                  description="Movie recommendations from the latest reelhouse run.")
    app.state.holder = holder
    if token is not None:
        app.add_middleware(BearerToken, token=token)

    def served_run() -> str | None:
        return holder.model.run_id if holder.model is not None else None

    @app.exception_handler(ReelhouseError)
    async def _reelhouse_error(request, exc: ReelhouseError):
        status = {NotFound: 404, BadRequest: 422, Unavailable: 503}.get(type(exc), 422)
        return error(status, str(exc), run_id=served_run())

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request, exc: RequestValidationError):
        return error(422, validation_sentence(exc.errors()), run_id=served_run())

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request, exc: StarletteHTTPException):
        if exc.status_code == 404:
            message = f"There is no {request.url.path} here: see /docs for the API."
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}."
        elif exc.status_code == 400:
            message = "The request body could not be read: send UTF-8 JSON."
        else:
            message = str(exc.detail)
        return error(exc.status_code, message, run_id=served_run())

    @app.exception_handler(Exception)
    async def _bug(request, exc: Exception):
        # A bug, not the caller's fault: one sentence for them, the trace for the operator.
        traceback.print_exception(exc, file=sys.stderr)
        return error(500, f"The server failed on this request ({type(exc).__name__}); the "
                     "details are in its log.", run_id=served_run())

    @app.get("/health", response_model=Health, responses={503: {"model": Health}})
    async def health():
        """Status, and the model run being served (503 while there is none)."""
        model = holder.model
        if model is None:
            return JSON({"status": "unavailable", "error": holder.error}, status_code=503)
        body = {"status": "ok", "run_id": model.run_id,
                "list_model": model.run.get("list_model"),
                "finished_at": model.run["finished_at"].isoformat(),
                "rating_scale": list(model.scale), "metrics": model.metrics,
                "movies": len(model.movies), "users": len(model.known_users),
                "loaded_seconds": round(model.loaded_seconds, 3)}
        if holder.error:  # serving the loaded run, but the warehouse cannot give a newer one
            body.update(status="stale", error=holder.error)
            return JSON(body, status_code=503)
        return JSON(body)

    @app.get("/movies", response_model=SearchResult, responses=ERRORS)
    async def search(q: Annotated[str, Query(min_length=1, max_length=200)],
                     limit: Annotated[int, Query(ge=1, le=MAX_N)] = 10):
        """Movies whose title holds every word of q (case- and accent-insensitive)."""
        model = holder.current()
        return JSON({"run_id": model.run_id, "items": model.search(q, limit)})

    @app.get("/movies/{movie_id}", response_model=MovieDetail, responses=ERRORS)
    async def movie(movie_id: Annotated[int, Path()]):
        """One movie: title, year, genres and rating statistics."""
        model = holder.current()
        return JSON({"run_id": model.run_id, **model.movie(movie_id)})

    @app.get("/movies/{movie_id}/similar", response_model=SimilarMovies, responses=ERRORS)
    async def similar(movie_id: Annotated[int, Path()],
                      n: Annotated[int | None, Query(ge=1, le=MAX_N)] = None):
        """The movies whose factors point the same way (cosine), most similar first
        (n: default and at most the run's top N)."""
        model = holder.current()
        return JSON({"run_id": model.run_id, "movie": model.movie(movie_id),
                     "items": model.similar_to(movie_id, n or model.params["top_n"])})

    @app.get("/users/{user_id}/recommendations", response_model=ItemList, responses=ERRORS)
    async def user_recommendations(user_id: Annotated[int, Path()],
                                   n: Annotated[int | None, Query(ge=1, le=MAX_N)] = None):
        """The served list of a known user, never a movie they rated; source 'most_rated'
        marks the fallback for a user the model has no factors for (n: default and at most
        the run's top N)."""
        model = holder.current()
        items, source = model.for_user(user_id, n or model.params["top_n"])
        return JSON(_listing(model, items, source=source))

    @app.post("/recommendations", response_model=ItemList, responses=ERRORS)
    async def new_user(body: Annotated[NewUser, Body()]):
        """A new user's list: their ratings folded into the serving model (no retraining),
        never a rated movie, each with the rated movie that adds most to its score."""
        model = holder.current()
        items, left_out = model.fold_in([(r.movie_id, r.rating) for r in body.ratings], body.n)
        return JSON(_listing(model, items, source="fold_in", left_out=left_out))

    @app.get("/predict", response_model=Estimate, responses=ERRORS)
    async def predict(user_id: Annotated[int, Query()], movie_id: Annotated[int, Query()]):
        """The rating model's estimate for one (user, movie) pair."""
        model = holder.current()
        return JSON({"run_id": model.run_id, **model.predict(user_id, movie_id)})

    page = resources.files("pipelines") / "page"

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index():
        return Response(page.joinpath("index.html").read_bytes(), media_type="text/html")

    @app.get("/page.js", include_in_schema=False)
    async def page_js():
        return Response(page.joinpath("page.js").read_bytes(),
                        media_type="text/javascript")

    @app.get("/page.css", include_in_schema=False)
    async def page_css():
        return Response(page.joinpath("page.css").read_bytes(), media_type="text/css")

    return app


def validation_sentence(errors: list[dict]) -> str:
    """FastAPI's validation errors as one sentence about the first, naming the field by its
    place in the request (ratings[2].movie_id)."""
    first = errors[0] if errors else {}
    kind, where, ctx = first.get("type", ""), list(first.get("loc", ())), first.get("ctx", {})
    if where[:1] and where[0] in ("body", "query", "path"):
        where = where[1:]
    name = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in where).lstrip(".") \
        or "the request body"
    given = first.get("input")
    if kind == "json_invalid":
        return "The request body is not valid JSON."
    if not where:
        return "The request body must be a JSON object like {\"ratings\": [...], \"n\": 10}."
    if kind == "missing":
        return f"{name} is required."
    if kind == "extra_forbidden":
        return f"{name} is not a field this endpoint takes."
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return f"{name} must be a whole number, got {given!r}."
    if kind in ("float_parsing", "float_type", "finite_number"):
        return f"{name} must be a number, got {given!r}."
    bounds = {"greater_than_equal": ("ge", "at least"), "less_than_equal": ("le", "at most"),
              "greater_than": ("gt", "more than"), "less_than": ("lt", "less than")}
    if kind in bounds:
        key, words = bounds[kind]
        return f"{name} must be {words} {ctx.get(key)}, got {given!r}."
    if kind == "string_too_short":
        return f"{name} must not be empty."
    if kind == "string_too_long":
        return f"{name} is too long: at most {ctx.get('max_length')} characters."
    if kind == "too_long":
        return (f"{name} holds {ctx.get('actual_length'):,} items, more than the "
                f"{ctx.get('max_length'):,} one request may have.")
    if kind == "list_type":
        return f"{name} must be a list."
    if kind in ("model_attributes_type", "dict_type", "model_type"):
        return f"{name} must be an object like {{\"movie_id\": 1, \"rating\": 4.5}}."
    return f"{name}: {first.get('msg', 'is not valid')}."


def serve(settings: Settings, host: str = "127.0.0.1", port: int = 8000,
          token: str | None = None, no_auth: bool = False, reload_seconds: float = 2.0) -> int:
    """Run the API until SIGINT or SIGTERM. Beyond loopback it wants a token unless no_auth."""
    import uvicorn

    from pipelines.serve import is_loopback

    if not is_loopback(host) and token is None and not no_auth:
        raise ReelhouseError(
            f"Serving on {host} would let anyone who can reach port {port} use the API: set "
            "REELHOUSE_API_TOKEN or pass --token-file FILE, bind to 127.0.0.1, or pass "
            "--no-auth to accept that risk.")
    if not is_loopback(host) and token is None:
        progress.say(f"WARNING: serving on {host} with no authentication: anyone who can "
                     f"reach port {port} can use the API")
    app = create_app(settings, token, reload_seconds)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning",
                            access_log=False, timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    started = time.monotonic()

    original_startup = server.startup

    async def startup(sockets=None):
        await original_startup(sockets)
        progress.say(f"API up in {time.monotonic() - started:.1f}s")
        print(f"READY http://{host}:{port}/", flush=True)

    server.startup = startup
    server.run()
    return 0
