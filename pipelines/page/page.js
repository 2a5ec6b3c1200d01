// The page's only script: it calls the API it is served by (same origin), nothing else.
"use strict";

const state = { ratings: new Map(), scale: [0.5, 5], token: sessionStorage.getItem("reelhouse-token") };
const $ = (id) => document.getElementById(id);

async function api(path, options = {}) {
  const headers = { "Content-Type": "application/json" };
  if (state.token) headers.Authorization = `Bearer ${state.token}`;
  const response = await fetch(path, { ...options, headers });
  if (response.status === 401) $("token-box").hidden = false;
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
  return body;
}

function describe(movie) {
  const year = movie.year ? ` (${movie.year})` : "";
  const stats = movie.num_ratings ? ` · ${movie.avg_rating.toFixed(1)}★ from ${movie.num_ratings.toLocaleString()} ratings` : "";
  return { title: `${movie.title}${year}`, facts: `${(movie.genres || []).join(", ") || "no genres"}${stats}` };
}

function movieItem(movie, extra) {
  const li = document.createElement("li");
  li.dataset.movieId = movie.movie_id;
  const text = describe(movie);
  const title = document.createElement("a");
  title.href = "#";
  title.className = "title";
  title.textContent = text.title;
  title.addEventListener("click", (event) => { event.preventDefault(); openMovie(movie.movie_id); });
  const facts = document.createElement("span");
  facts.className = "facts";
  facts.textContent = text.facts;
  li.append(title, facts);
  if (extra) li.append(extra);
  return li;
}

function stars(movie) {
  const box = document.createElement("span");
  box.className = "stars";
  const [low, high] = state.scale;
  const steps = [];
  for (let value = Math.max(1, Math.ceil(low)); value <= high; value += 1) steps.push(value);
  for (const value of steps) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "rate";
    button.dataset.rating = value;
    button.textContent = `${value}★`;
    button.title = `Rate ${movie.title} ${value} of ${high}`;
    button.addEventListener("click", () => rate(movie, value));
    box.append(button);
  }
  return box;
}

async function search(event) {
  event.preventDefault();
  const query = $("search").value.trim();
  if (!query) return;
  $("search-status").textContent = "Searching…";
  try {
    const body = await api(`movies?q=${encodeURIComponent(query)}&limit=12`);
    $("results").replaceChildren(...body.items.map((movie) => movieItem(movie, stars(movie))));
    $("search-status").textContent = body.items.length ? "" : `No title has “${query}”.`;
  } catch (error) {
    $("search-status").textContent = error.message;
  }
}

function rate(movie, value) {
  state.ratings.set(movie.movie_id, { movie, rating: value });
  showRatings();
}

function showRatings() {
  const items = [...state.ratings.values()].map(({ movie, rating }) => {
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "remove";
    remove.textContent = `${rating}★ ✕`;
    remove.title = `Remove your rating of ${movie.title}`;
    remove.addEventListener("click", () => { state.ratings.delete(movie.movie_id); showRatings(); });
    return movieItem(movie, remove);
  });
  $("rated").replaceChildren(...items);
  $("rated-empty").hidden = items.length > 0;
  $("recommend").disabled = items.length === 0;
}

async function recommend() {
  $("recs-status").textContent = "Folding your ratings into the model…";
  const ratings = [...state.ratings.values()].map(({ movie, rating }) => ({ movie_id: movie.movie_id, rating }));
  try {
    const body = await api("recommendations", { method: "POST", body: JSON.stringify({ ratings, n: 10 }) });
    $("recommendations").replaceChildren(...body.items.map((item) => {
      const why = document.createElement("span");
      why.className = "because";
      why.textContent = `because you rated ${item.because.title} ${item.because.rating}★`;
      return movieItem(item, why);
    }));
    $("recs-status").textContent = body.left_out.length
      ? `${body.left_out.length} of your movies are too new to the model and were left out.` : "";
  } catch (error) {
    $("recs-status").textContent = error.message;
  }
}

async function openMovie(movieId) {
  try {
    const body = await api(`movies/${movieId}/similar`);
    const text = describe(body.movie);
    $("movie-title").textContent = text.title;
    $("movie-facts").textContent = text.facts;
    $("similar").replaceChildren(...body.items.map((movie) => movieItem(movie, stars(movie))));
    if (!body.items.length) $("similar").textContent = "Too few ratings to place this movie.";
    $("movie-panel").hidden = false;
    $("movie-panel").scrollIntoView({ behavior: "smooth" });
  } catch (error) {
    $("search-status").textContent = error.message;
  }
}

async function showModel() {
  const response = await fetch("health");
  const body = await response.json();
  if (!response.ok) {
    $("model-run").textContent = `No model to serve: ${body.error}`;
    return;
  }
  state.scale = body.rating_scale;
  const m = body.metrics || {};
  $("model-run").textContent = `Model run ${body.run_id} (${body.list_model}), finished ${body.finished_at.replace("T", " ").slice(0, 16)}`;
  const parts = [];
  if (m.ndcg_at_10_served != null) parts.push(`NDCG@10 ${m.ndcg_at_10_served.toFixed(3)}`);
  if (m.ndcg_at_10_most_rated != null) parts.push(`most-rated baseline ${m.ndcg_at_10_most_rated.toFixed(3)}`);
  if (m.rmse != null) parts.push(`rating RMSE ${m.rmse.toFixed(4)}`);
  $("model-metrics").textContent = parts.join(" · ");
}

$("search-form").addEventListener("submit", search);
$("recommend").addEventListener("click", recommend);
$("movie-close").addEventListener("click", () => { $("movie-panel").hidden = true; });
$("token-save").addEventListener("click", () => {
  state.token = $("token").value.trim();
  sessionStorage.setItem("reelhouse-token", state.token);
  $("token-box").hidden = true;
});
showModel();
setInterval(showModel, 30000);  // a new run is served without a restart: so is its footer
