// mmer analyze HTML report: per clip, a cursor on the timeline follows playback, the "now" table
// shows the window under the cursor (a polite live region announces each new window, never the
// running clock), the spoken word is highlighted; clicking the timeline or a word (or Enter/Space
// on a focused word) seeks; a clip not found beside the report is tried at its absolute path. Data: the JSON in each section's <script class="clip-data">.
(function () {
  "use strict";

  function clock(t) {
    var m = Math.floor(t / 60), s = t - 60 * m;
    return m + ":" + (s < 10 ? "0" : "") + s.toFixed(1);
  }

  function setBar(cell, value) {
    var absent = value === null || value === undefined;
    cell.querySelector(".bar").classList.toggle("absent", absent);
    cell.querySelector(".bar i").style.width = absent ? "0%" : (100 * value).toFixed(1) + "%";
    cell.querySelector(".num").textContent = absent ? "\u2013" : value.toFixed(2);
  }

  function setupClip(section) {
    var data = JSON.parse(section.querySelector("script.clip-data").textContent);
    var media = section.querySelector(".media");
    if (!media) return;
    var cursors = section.querySelectorAll(".lane .cursor");
    var plots = section.querySelectorAll(".lane svg");
    var words = section.querySelectorAll(".transcript .w");
    var rows = section.querySelectorAll(".now tbody tr");
    var span = section.querySelector(".now-span");
    var clockEl = section.querySelector(".now .clock");
    var announce = section.querySelector(".now .announce");
    var timeline = section.querySelector(".timeline");
    var shownWindow = -1, shownWord = -1, frame = 0;

    function windowAt(t) {
      var i = 0;
      while (i + 1 < data.windows.length && data.windows[i + 1].start <= t) i++;
      return i;
    }

    function wordAt(t) {
      for (var i = 0; i < data.words.length; i++) {
        if (data.words[i][1] <= t && t < data.words[i][2]) return i;
        if (data.words[i][1] > t) break;
      }
      return -1;
    }

    function announcement(w) {
      var present = [];
      data.labels.forEach(function (label, k) {
        if (w.present[k]) present.push(label + " " + w.p[k].toFixed(2));
      });
      var none = w.signal === false ? "no signal" : "no emotion present";
      return "Window " + w.start.toFixed(1) + " to " + w.end.toFixed(1) + " s: " + (present.join(", ") || none);
    }

    function showWindow(i) {
      var w = data.windows[i];
      span.textContent = w.start.toFixed(1) + "\u2013" + w.end.toFixed(1) + " s";
      // the only live region: screen readers hear window changes, not the clock of every frame
      if (announce && shownWindow !== -1) announce.textContent = announcement(w);
      rows.forEach(function (row, k) {
        row.classList.toggle("present", w.present[k]);
        setBar(row.querySelector(".p"), w.p[k]);
        row.querySelector(".u").textContent = w.u[k].toFixed(2);
        data.streams.forEach(function (stream) {
          var values = w.evidence[stream];
          setBar(row.querySelector(".ev-" + stream), values ? values[k] : null);
        });
      });
    }

    function update() {
      var t = Math.min(media.currentTime || 0, data.duration);
      cursors.forEach(function (c) {
        c.setAttribute("x1", t);
        c.setAttribute("x2", t);
      });
      if (clockEl) clockEl.textContent = clock(t);
      var w = windowAt(t);
      if (w !== shownWindow) {
        showWindow(w);
        shownWindow = w;
      }
      var k = wordAt(t);
      if (k !== shownWord) {
        if (shownWord >= 0) words[shownWord].classList.remove("spoken");
        if (k >= 0) words[k].classList.add("spoken");
        shownWord = k;
      }
    }

    function loop() {
      update();
      frame = media.paused || media.ended ? 0 : window.requestAnimationFrame(loop);
    }

    function seek(t) {
      media.currentTime = Math.max(0, Math.min(t, data.duration));
      update();
    }

    media.addEventListener("play", function () {
      if (!frame) frame = window.requestAnimationFrame(loop);
    });
    ["timeupdate", "seeked", "loadedmetadata", "pause"].forEach(function (name) {
      media.addEventListener(name, update);
    });
    media.addEventListener("error", function () {
      // the relative path failed (the report was moved): try the clip's absolute path once
      var fallback = media.getAttribute("data-fallback");
      if (fallback && media.getAttribute("src") !== fallback) {
        media.setAttribute("src", fallback);
        media.load();
        return;
      }
      var note = section.querySelector(".media-missing");
      if (note) note.hidden = false;
    });
    plots.forEach(function (svg) {
      svg.addEventListener("click", function (event) {
        var box = svg.getBoundingClientRect();
        seek((event.clientX - box.left) / box.width * data.duration);
      });
    });
    words.forEach(function (el, i) {
      el.addEventListener("click", function () { seek(data.words[i][1]); });
      el.addEventListener("keydown", function (event) {  // a word is a button: Enter or Space seeks
        if (event.key !== "Enter" && event.key !== " ") return;
        event.preventDefault();
        seek(data.words[i][1]);
      });
    });
    timeline.addEventListener("keydown", function (event) {
      var step = data.windows[0].end - data.windows[0].start;
      if (event.key === "ArrowRight") seek(media.currentTime + step);
      else if (event.key === "ArrowLeft") seek(media.currentTime - step);
      else return;
      event.preventDefault();
    });
    update();
  }

  document.querySelectorAll("section.clip[data-clip]").forEach(setupClip);
})();
