-- A small application table for the demo's table source (SOURCE_TABLES in the Makefile).
CREATE TABLE IF NOT EXISTS question_templates (
    id         integer PRIMARY KEY,
    title      text NOT NULL,
    question   text NOT NULL,
    guidance   text
);
INSERT INTO question_templates (id, title, question, guidance) VALUES
    (1, 'Scale practice', 'How should I practise major scales?',
     'Start slowly with a metronome, hands separately, then together; raise the tempo by 4 bpm a day.'),
    (2, 'Sight reading', 'How can I get better at sight reading?',
     'Read a short new piece every day, keep going through mistakes, and look ahead one bar.'),
    (3, '和音の練習', '和音をきれいに響かせるには？', 'まずは一音ずつ確認し、手の形を保ったまま同時に鳴らします。'),
    (4, 'リズム', '裏拍が安定しません。', 'メトロノームを2拍目と4拍目に合わせて練習しましょう。')
ON CONFLICT (id) DO NOTHING
